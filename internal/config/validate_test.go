package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidationProblems(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "cert.pem", "cert")
	writeFile(t, dir, "key.pem", "key")
	writeFile(t, dir, "userlist.txt", "\"alice\" \"pw\"\n")
	writeFile(t, dir, "bad-userlist.txt", "\"alice\" \"pw\"\nbob secret\n\"carol\" \"SCRAM-SHA-256$x\"\n")
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		toml string
		// want are the problems, each as it follows the file's directory.
		want []string
	}{
		{
			name: "ports",
			toml: trust + "listen_port = 70000\nhttp_listen = \"localhost:99999\"\n[databases.app]\nport = 0\n",
			want: []string{
				`pauseproxy.toml: proxy.listen_port: must be 1..65535, got 70000`,
				`pauseproxy.toml: proxy.http_listen: want "host:port" or "host" (port 9930), like "127.0.0.1:9930", got "localhost:99999"`,
				`pauseproxy.toml: databases.app.port: must be 1..65535, got 0`,
			},
		},
		{
			name: "negative and zero sizes",
			toml: trust + "max_client_conn = 0\ndefault_pool_size = -1\nmin_pool_size = -2\nmax_message_size = 100\n" +
				"[databases.app]\npool_size = 0\nreserve_pool = -1\n[users.bob]\nmax_user_connections = -3\n",
			want: []string{
				`pauseproxy.toml: proxy.default_pool_size: must not be negative, got -1`,
				`pauseproxy.toml: proxy.min_pool_size: must not be negative, got -2`,
				`pauseproxy.toml: proxy.max_client_conn: must be at least 1, got 0`,
				`pauseproxy.toml: proxy.max_message_size: must be 10000..2147483647 bytes, got 100`,
				`pauseproxy.toml: databases.app.reserve_pool: must not be negative, got -1`,
				`pauseproxy.toml: databases.app.pool_size: must be at least 1, got 0`,
				`pauseproxy.toml: users.bob.max_user_connections: must not be negative, got -3`,
			},
		},
		{
			name: "enumerations",
			toml: "[proxy]\nauth_type = \"pam\"\npool_mode = \"statement\"\nlog_level = \"verbose\"\nlog_format = \"xml\"\nserver_tls_sslmode = \"on\"\n" +
				"[databases.app]\npool_mode = \"sessions\"\n[users.bob]\npool_mode = \"statement\"\n",
			want: []string{
				`pauseproxy.toml: proxy.auth_type: "pam" is not supported by pauseproxy (want trust, md5, scram-sha-256, plain or hba)`,
				`pauseproxy.toml: proxy.pool_mode: "statement" is not supported by pauseproxy (want session or transaction)`,
				`pauseproxy.toml: proxy.log_level: unknown value "verbose" (want debug, info, warn or error)`,
				`pauseproxy.toml: proxy.log_format: unknown value "xml" (want text or json)`,
				`pauseproxy.toml: proxy.server_tls_sslmode: unknown value "on" (want disable, allow, prefer, require, verify-ca or verify-full)`,
				`pauseproxy.toml: databases.app.pool_mode: unknown value "sessions" (want session or transaction)`,
				`pauseproxy.toml: users.bob.pool_mode: "statement" is not supported by pauseproxy (want session or transaction)`,
			},
		},
		{
			name: "password auth needs passwords",
			toml: "[proxy]\nauth_type = \"scram-sha-256\"\n[databases.app]\n",
			want: []string{`pauseproxy.toml: proxy.auth_type: "scram-sha-256" needs passwords: set auth_file, auth_user (with auth_query), or password in [users.<name>] tables`},
		},
		{
			name: "auth_user needs auth_query",
			toml: "[proxy]\nauth_query = \"\"\n[databases.app]\nauth_user = \"lookup\"\n",
			want: []string{`pauseproxy.toml: proxy.auth_query: must not be empty when auth_user is set`},
		},
		{
			name: "auth_file problems name its file and line",
			toml: "[proxy]\nauth_file = \"bad-userlist.txt\"\n",
			want: []string{
				`bad-userlist.txt: line 2: user name: want a field in double quotes, like "name" "password"`,
				`bad-userlist.txt: line 3: password of user "carol": malformed SCRAM secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)`,
			},
		},
		{
			name: "files must exist",
			toml: "[proxy]\nauth_file = \"missing.txt\"\nserver_tls_ca_file = \"adir\"\n",
			want: []string{
				`pauseproxy.toml: proxy.server_tls_ca_file: ` + filepath.Join(dir, "adir") + `: not a regular file`,
				`pauseproxy.toml: proxy.auth_file: ` + filepath.Join(dir, "missing.txt") + `: cannot read: no such file or directory`,
			},
		},
		{
			name: "client TLS needs a certificate",
			toml: trust + "client_tls_sslmode = \"require\"\nclient_tls_cert_file = \"cert.pem\"\n",
			want: []string{`pauseproxy.toml: proxy.client_tls_key_file: required when proxy.client_tls_sslmode is "require"`},
		},
		{
			name: "client TLS verify needs a CA",
			toml: trust + "client_tls_sslmode = \"verify-ca\"\nclient_tls_cert_file = \"cert.pem\"\nclient_tls_key_file = \"key.pem\"\n",
			want: []string{`pauseproxy.toml: proxy.client_tls_ca_file: required when proxy.client_tls_sslmode is "verify-ca", to verify client certificates`},
		},
		{
			name: "server TLS certificate and key together",
			toml: trust + "server_tls_key_file = \"key.pem\"\n",
			want: []string{`pauseproxy.toml: proxy.server_tls_cert_file: set proxy.server_tls_cert_file and proxy.server_tls_key_file together`},
		},
		{
			name: "at least one listener",
			toml: trust + "listen_addr = \"\"\nunix_socket_dir = \"\"\n",
			want: []string{`pauseproxy.toml: proxy.listen_addr: no listener: set listen_addr, unix_socket_dir or both`},
		},
		{
			name: "listen_addr and unix_socket_dir",
			toml: trust + "listen_addr = \"10.0.0.1:6432\"\nunix_socket_dir = \"run\"\n",
			want: []string{
				`pauseproxy.toml: proxy.listen_addr: entry "10.0.0.1:6432": want an IP address, a host name or "*", without port (see listen_port)`,
				`pauseproxy.toml: proxy.unix_socket_dir: want an absolute path, got "run"`,
			},
		},
		{
			name: "unix_socket_dir must be a directory",
			toml: trust + "unix_socket_dir = \"" + filepath.Join(dir, "cert.pem") + "\"\n",
			want: []string{`pauseproxy.toml: proxy.unix_socket_dir: ` + filepath.Join(dir, "cert.pem") + `: not a directory`},
		},
		{
			name: "reserved and empty database names",
			toml: trust + "[databases.pgbouncer]\n[databases.pauseproxy]\n[databases.\"\"]\n",
			want: []string{
				`pauseproxy.toml: databases."": empty database name`,
				`pauseproxy.toml: databases.pauseproxy: the name "pauseproxy" is reserved for the admin console`,
				`pauseproxy.toml: databases.pgbouncer: the name "pgbouncer" is reserved for the admin console`,
			},
		},
		{
			name: "unknown discovery",
			toml: trust + "[databases.app]\ndiscovery = \"zookeeper\"\n",
			want: []string{`pauseproxy.toml: databases.app.discovery: unknown value "zookeeper" (want static, patroni or consul)`},
		},
		{
			name: "patroni needs URLs",
			toml: trust + "[databases.a]\ndiscovery = \"patroni\"\n[databases.b]\ndiscovery = \"patroni\"\n" +
				"patroni_urls = [\"http://ok:8008\", \"10.0.0.1:8008\", \"ftp://x\", \"http://user:hunter2@:8008\"]\n",
			want: []string{
				`pauseproxy.toml: databases.a.patroni_urls: required with discovery = "patroni": the REST API of each member, like ["http://10.0.0.1:8008"]`,
				`pauseproxy.toml: databases.b.patroni_urls: entry 2: want an http:// or https:// URL with a host`,
				`pauseproxy.toml: databases.b.patroni_urls: entry 3: want an http:// or https:// URL with a host`,
				`pauseproxy.toml: databases.b.patroni_urls: entry 4: want an http:// or https:// URL with a host`,
			},
		},
		{
			name: "consul needs a service",
			toml: trust + "[databases.app]\ndiscovery = \"consul\"\nconsul_addr = \"consul\"\nconsul_scheme = \"grpc\"\nconsul_namespace = \"\"\n",
			want: []string{
				`pauseproxy.toml: databases.app.consul_service: required with discovery = "consul": the Patroni scope`,
				`pauseproxy.toml: databases.app.consul_addr: want "host:port", like "127.0.0.1:8500", got "consul"`,
				`pauseproxy.toml: databases.app.consul_namespace: must not be empty (Patroni's default is "service")`,
				`pauseproxy.toml: databases.app.consul_scheme: unknown value "grpc" (want http or https)`,
			},
		},
		{
			name: "keys of another discovery",
			toml: trust + "[databases.a]\ndiscovery = \"patroni\"\npatroni_urls = [\"http://p:8008\"]\nhost = \"10.0.0.1\"\nconsul_service = \"x\"\n" +
				"[databases.b]\npatroni_urls = [\"http://p:8008\"]\n",
			want: []string{
				`pauseproxy.toml: databases.a.consul_service: only used with discovery = "consul" (this database uses "patroni")`,
				`pauseproxy.toml: databases.a.host: only used with discovery = "static" (this database uses "patroni")`,
				`pauseproxy.toml: databases.b.patroni_urls: only used with discovery = "patroni" (this database uses "static")`,
			},
		},
		{
			name: "hosts",
			toml: trust + "[databases.a]\nhost = \"h\"\nhosts = [\"h2\"]\n[databases.b]\nhosts = []\n" +
				"[databases.c]\nhosts = [\"\", \"h:0\", \"h:x\", \"a b\", \"::1:5432:\", \"h!:1\"]\n[databases.d]\nhost = \"bad host!\"\n",
			want: []string{
				`pauseproxy.toml: databases.a.hosts: set host or hosts, not both`,
				`pauseproxy.toml: databases.b.hosts: must list at least one host`,
				`pauseproxy.toml: databases.c.hosts: entry "": empty host`,
				`pauseproxy.toml: databases.c.hosts: entry "h:0": port must be 1..65535`,
				`pauseproxy.toml: databases.c.hosts: entry "h:x": port must be 1..65535`,
				`pauseproxy.toml: databases.c.hosts: entry "a b": must not contain spaces`,
				`pauseproxy.toml: databases.c.hosts: entry "::1:5432:": want "host" or "host:port" ("[v6addr]:port" for IPv6)`,
				`pauseproxy.toml: databases.c.hosts: entry "h!:1": want an IP address, a host name or a Unix socket directory`,
				`pauseproxy.toml: databases.d.host: want an IP address, a host name or a Unix socket directory, got "bad host!"`,
			},
		},
		{
			name: "peers",
			toml: trust + "peers = [\"10.0.0.5\", \"10.0.0.5:6432\", \":6432\", \"10.0.0.6:0\", \"10.0.0.5:6432\"]\n",
			want: []string{
				`pauseproxy.toml: proxy.peers: entry 1: want "host:port" of another pauseproxy's listener, like "10.0.0.5:6432", got "10.0.0.5"`,
				`pauseproxy.toml: proxy.peers: entry 3: want "host:port" of another pauseproxy's listener, like "10.0.0.5:6432", got ":6432"`,
				`pauseproxy.toml: proxy.peers: entry 4: want "host:port" of another pauseproxy's listener, like "10.0.0.5:6432", got "10.0.0.6:0"`,
				`pauseproxy.toml: proxy.peers: entry 5: "10.0.0.5:6432" is listed twice`,
			},
		},
		{
			name: "Patroni REST API settings",
			toml: trust + "[databases.a]\ndiscovery = \"patroni\"\npatroni_urls = [\"https://p:8008\"]\npatroni_username = \"api\"\npatroni_cert_file = \"cert.pem\"\n" +
				"[databases.b]\ndiscovery = \"consul\"\nconsul_service = \"main\"\npatroni_password = \"hunter2\"\npatroni_ca_file = \"missing.pem\"\npatroni_key_file = \"adir\"\n" +
				"[databases.c]\npatroni_username = \"api\"\npatroni_ca_file = \"cert.pem\"\n" +
				"[databases.d]\ndiscovery = \"patroni\"\npatroni_urls = [\"http://p:8008\"]\npatroni_username = \"\"\npatroni_password = \"hunter2\"\n",
			want: []string{
				`pauseproxy.toml: databases.c.patroni_ca_file: only used with discovery = "patroni" or "consul" (this database uses "static")`,
				`pauseproxy.toml: databases.c.patroni_username: only used with discovery = "patroni" or "consul" (this database uses "static")`,
				`pauseproxy.toml: databases.a.patroni_password: required with patroni_username (Patroni's restapi.authentication has both); or patroni_password_env / patroni_password_file`,
				`pauseproxy.toml: databases.a.patroni_cert_file: set databases.a.patroni_cert_file and databases.a.patroni_key_file together (a client certificate and its key)`,
				`pauseproxy.toml: databases.b.patroni_username: required with patroni_password (Patroni's restapi.authentication has both)`,
				`pauseproxy.toml: databases.b.patroni_cert_file: set databases.b.patroni_cert_file and databases.b.patroni_key_file together (a client certificate and its key)`,
				`pauseproxy.toml: databases.b.patroni_ca_file: ` + filepath.Join(dir, "missing.pem") + `: cannot read: no such file or directory`,
				`pauseproxy.toml: databases.b.patroni_key_file: ` + filepath.Join(dir, "adir") + `: not a regular file`,
				`pauseproxy.toml: databases.d.patroni_username: must not be empty`,
			},
		},
		{
			name: "Consul registration",
			toml: trust + "listen_addr = \"0.0.0.0\"\nconsul_register = true\nconsul_register_addr = \"consul\"\nconsul_register_scheme = \"grpc\"\n" +
				"consul_register_service = \"pause proxy\"\nconsul_register_tags = [\"a\", \"\"]\nconsul_register_ca_file = \"missing.pem\"\n",
			want: []string{
				`pauseproxy.toml: proxy.consul_register_addr: want "host:port" of the Consul agent's HTTP API, like "127.0.0.1:8500", got "consul"`,
				`pauseproxy.toml: proxy.consul_register_scheme: unknown value "grpc" (want http or https)`,
				`pauseproxy.toml: proxy.consul_register_ca_file: ` + filepath.Join(dir, "missing.pem") + `: cannot read: no such file or directory`,
				`pauseproxy.toml: proxy.consul_register_service: want letters, digits, '-' and '_' (a Consul service name that is also a DNS label), got "pause proxy"`,
				`pauseproxy.toml: proxy.consul_register_tags: empty tag`,
			},
		},
		{
			name: "Consul registration advertise",
			toml: trust + "consul_register = true\nconsul_register_advertise = \"[::]:6432\"\n",
			want: []string{`pauseproxy.toml: proxy.consul_register_advertise: "[::]:6432": want the IP address or host name the other proxies dial, not a wildcard`},
		},
		{
			name: "Consul registration needs TCP",
			toml: trust + "listen_addr = \"\"\nconsul_register = true\n",
			want: []string{`pauseproxy.toml: proxy.consul_register: needs a TCP listener (listen_addr): the other proxies reach this one's admin console over TCP`},
		},
		{
			name: "poll intervals",
			toml: trust + "[databases.a]\ndiscovery = \"patroni\"\npatroni_urls = [\"http://p:8008\"]\npoll_interval = 0\n" +
				"[databases.b]\npoll_interval = \"1s\"\nfast_poll_interval = \"2s\"\n",
			want: []string{
				`pauseproxy.toml: databases.a.poll_interval: must be more than 0`,
				`pauseproxy.toml: databases.b.fast_poll_interval: must not exceed poll_interval (1s), got 2s`,
			},
		},
		{
			name: "malformed SCRAM secrets",
			toml: trust + "[databases.a]\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$short:short\"\n[users.bob]\npassword = \"SCRAM-SHA-256$\"\n",
			want: []string{
				`pauseproxy.toml: databases.a.password: malformed SCRAM secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)`,
				`pauseproxy.toml: users.bob.password: malformed SCRAM secret (want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, dir, "pauseproxy.toml", tc.toml))
			assertProblems(t, problemsOf(t, err), tc.want)
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("a message quotes a credential: %v", err)
			}
		})
	}
}

// Every problem is reported at once, proxy first, then databases and users
// in name order.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := loadString(t, `
[proxy]
listen_port = 0
auth_type = "magic"
[databases.b]
discovery = "consul"
[databases.a]
pool_size = -1
[users.u]
pool_mode = "x"
`)
	assertProblems(t, problemsOf(t, err), []string{
		`pauseproxy.toml: proxy.listen_port: must be 1..65535, got 0`,
		`pauseproxy.toml: proxy.auth_type: unknown value "magic" (want trust, md5, scram-sha-256, plain or hba)`,
		`pauseproxy.toml: databases.a.pool_size: must not be negative, got -1`,
		`pauseproxy.toml: databases.b.consul_service: required with discovery = "consul": the Patroni scope`,
		`pauseproxy.toml: users.u.pool_mode: unknown value "x" (want session or transaction)`,
	})
}

func TestValidHost(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "db.example.com": true, "pg-0.pg_svc": true, "localhost.": true,
		"": false, "a b": false, "h:5432": false, "a..b": false, "*": false, strings.Repeat("a", 64): false,
	} {
		if got := validHost(s); got != want {
			t.Errorf("validHost(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestMinPoolSizeCapped(t *testing.T) {
	c, err := loadString(t, trust+"[databases.app]\npool_size = 2\nmin_pool_size = 3\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Databases["app"].MinPoolSize; got != 2 {
		t.Errorf("MinPoolSize = %d, want 2 (capped at pool_size)", got)
	}
	if len(c.Warnings) != 1 || !strings.HasSuffix(c.Warnings[0], "pauseproxy.toml: databases.app.min_pool_size: 3 exceeds pool_size (2); capped at 2, as PgBouncer does") {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

// MD5 hashes cannot serve SCRAM: PgBouncer accepts such a file, so this is
// a warning naming the users, not a failure.
func TestSCRAMWithMD5Hashes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "userlist.txt", "\"old\" \"md5d870fdc733701e62d2e02d9ab278c235\"\n\"new\" \""+scramAdmin+"\"\n\"plain\" \"pw\"\n")
	c, err := Load(writeFile(t, dir, "pauseproxy.toml", "[proxy]\nauth_type = \"scram-sha-256\"\nauth_file = \"userlist.txt\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `pauseproxy.toml: proxy.auth_file: MD5 hashes cannot be used with auth_type = "scram-sha-256"; these users cannot log in: old`
	if len(c.Warnings) != 1 || !strings.HasSuffix(c.Warnings[0], want) {
		t.Errorf("Warnings = %q, want one ending %q", c.Warnings, want)
	}
}

// TLS files for a Patroni whose configured URLs are all http are likely a
// mistake, but members may still name https api_urls: a warning.
func TestPatroniTLSWithoutHTTPS(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "ca.pem", "ca")
	c, err := Load(writeFile(t, dir, "pauseproxy.toml", trust+"[databases.a]\ndiscovery = \"patroni\"\npatroni_urls = [\"http://p:8008\"]\npatroni_ca_file = \"ca.pem\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `pauseproxy.toml: databases.a.patroni_ca_file: set, but no patroni_urls entry is https://: the TLS files are used only if Patroni names https API URLs`
	if len(c.Warnings) != 1 || !strings.HasSuffix(c.Warnings[0], want) {
		t.Errorf("Warnings = %q, want one ending %q", c.Warnings, want)
	}
}

// consul_register_advertise defaults to listen_addr (no host, for the
// agent's node address, when that is every address), takes listen_port
// when it has no port, and the other keys are unused (a warning) while
// consul_register is off. SET consul_register completes it as Load does.
func TestConsulRegisterAdvertise(t *testing.T) {
	for _, tc := range []struct {
		toml, want string
	}{
		{"listen_addr = \"10.0.1.5\"\nlisten_port = 7432\n", "10.0.1.5:7432"},
		{"listen_addr = \"*\"\n", ":6432"},
		{"listen_addr = \"::\"\n", ":6432"},
		{"listen_addr = \"*\"\nconsul_register_advertise = \"proxy-a.internal\"\n", "proxy-a.internal:6432"},
		{"consul_register_advertise = \"[::1]:7000\"\n", "[::1]:7000"},
		{"consul_register_advertise = \"::1\"\n", "[::1]:6432"},
	} {
		c, err := loadString(t, trust+"consul_register = true\n"+tc.toml)
		if err != nil {
			t.Fatalf("%q: %v", tc.toml, err)
		}
		if got := c.Proxy.ConsulRegisterAdvertise; got != tc.want {
			t.Errorf("%q: advertise %q, want %q", tc.toml, got, tc.want)
		}
	}

	c, err := loadString(t, trust+"consul_register_service = \"other\"\nconsul_register_token_env = \"HOME\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"pauseproxy.toml: proxy.consul_register_token_env: set, but consul_register is false: not used",
		"pauseproxy.toml: proxy.consul_register_service: set, but consul_register is false: not used",
	}
	if len(c.Warnings) != 2 || !strings.HasSuffix(c.Warnings[0], want[0]) || !strings.HasSuffix(c.Warnings[1], want[1]) {
		t.Errorf("Warnings = %q, want %q", c.Warnings, want)
	}

	c, err = WithSetting(c, "consul_register", "1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.ConsulRegisterAdvertise != "127.0.0.1:6432" || len(c.Warnings) != 0 {
		t.Errorf("after SET consul_register = 1: advertise %q, warnings %q", c.Proxy.ConsulRegisterAdvertise, c.Warnings)
	}
	if _, err := WithSetting(c, "consul_register_token", "x"); err == nil || !strings.Contains(err.Error(), "cannot be changed at run time") {
		t.Errorf("SET consul_register_token: %v", err)
	}
}

// server_reset_query_always is accepted (pgbouncer.ini files set it) but
// not applied: a warning says so.
func TestServerResetQueryAlwaysWarns(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(writeFile(t, dir, "pauseproxy.toml", trust+"server_reset_query_always = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "pauseproxy.toml: proxy.server_reset_query_always: not supported: server_reset_query runs only when a session-mode client disconnects; in transaction mode a server connection is not reset between clients"
	if len(c.Warnings) != 1 || !strings.HasSuffix(c.Warnings[0], want) {
		t.Errorf("Warnings = %q, want one ending %q", c.Warnings, want)
	}
}
