package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadString loads content as dir/pauseproxy.toml, in a fresh directory
// unless dir is given.
func loadString(t *testing.T, content string) (*Config, error) {
	t.Helper()
	return Load(writeFile(t, t.TempDir(), "pauseproxy.toml", content))
}

// problemsOf returns the problems of an *Error, failing the test for any
// other error.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is not *config.Error: %v", err, err)
	}
	if got := ce.Error(); got != strings.Join(ce.Problems, "\n") {
		t.Errorf("Error() = %q, want the problems joined by newlines", got)
	}
	return ce.Problems
}

// trust is a [proxy] that needs no password source, for tests about
// something else.
const trust = "[proxy]\nauth_type = \"trust\"\n"

func TestLoadDefaults(t *testing.T) {
	c, err := loadString(t, trust+"[databases.app]\n[databases.\"*\"]\n[users.bob]\n")
	if err != nil {
		t.Fatal(err)
	}
	want := defaultProxy()
	want.AuthType = AuthTrust
	if !reflect.DeepEqual(c.Proxy, want) {
		t.Errorf("Proxy = %+v\nwant %+v", c.Proxy, want)
	}
	// The defaults types.go promises, spelled out once.
	p := c.Proxy
	for _, check := range []struct {
		name      string
		got, want any
	}{
		{"listen_addr", p.ListenAddr, "127.0.0.1"},
		{"listen_port", p.ListenPort, 6432},
		{"unix_socket_dir", p.UnixSocketDir, "/tmp"},
		{"auth_query", p.AuthQuery, "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"},
		{"pool_mode", p.PoolMode, PoolModeTransaction},
		{"max_client_conn", p.MaxClientConn, 100},
		{"default_pool_size", p.DefaultPoolSize, 20},
		{"reserve_pool_timeout", p.ReservePoolTimeout, 5 * time.Second},
		{"server_lifetime", p.ServerLifetime, time.Hour},
		{"server_idle_timeout", p.ServerIdleTimeout, 10 * time.Minute},
		{"server_connect_timeout", p.ServerConnectTimeout, 15 * time.Second},
		{"server_login_retry", p.ServerLoginRetry, 15 * time.Second},
		{"query_wait_timeout", p.QueryWaitTimeout, 2 * time.Minute},
		{"client_login_timeout", p.ClientLoginTimeout, time.Minute},
		{"server_reset_query", p.ServerResetQuery, "DISCARD ALL"},
		{"max_prepared_statements", p.MaxPreparedStatements, 200},
		{"max_message_size", p.MaxMessageSize, 64 << 20},
		{"large_message_budget", p.LargeMessageBudget, 256 << 20},
		{"client_tls_sslmode", p.ClientTLS.SSLMode, "disable"},
		{"server_tls_sslmode", p.ServerTLS.SSLMode, "prefer"},
		{"hold_timeout", p.HoldTimeout, 30 * time.Second},
		{"drain_timeout", p.DrainTimeout, 30 * time.Second},
		{"shutdown_timeout", p.ShutdownTimeout, 30 * time.Second},
		{"log_level", p.LogLevel, "info"},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s = %v, want %v", check.name, check.got, check.want)
		}
	}

	app := c.Databases["app"]
	wantApp := &Database{
		Name: "app", Host: "127.0.0.1", Hosts: []string{"127.0.0.1:5432"}, Port: 5432,
		DBName: "app", PoolSize: 20, Discovery: DiscoveryStatic,
		PollInterval: time.Second, FastPollInterval: 100 * time.Millisecond, OnSplitBrain: SplitBrainHold,
		TargetSessionAttrs: TargetReadWrite, ReadOnlyRouting: RoutePrimary,
	}
	if !reflect.DeepEqual(app, wantApp) {
		t.Errorf("app = %+v\nwant %+v", app, wantApp)
	}
	if fb := c.Databases["*"]; fb.DBName != "" {
		t.Errorf(`"*" DBName = %q, want "" (the requested name)`, fb.DBName)
	}
	if u := c.Users["bob"]; !reflect.DeepEqual(u, &User{Name: "bob"}) {
		t.Errorf("bob = %+v", u)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

func TestLoadEverything(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "userlist.txt", `"alice" "secret"`+"\n")
	writeFile(t, dir, "server.crt", "cert")
	writeFile(t, dir, "server.key", "key")
	writeFile(t, dir, "ca.crt", "ca")
	path := writeFile(t, dir, "pauseproxy.toml", `
[proxy]
listen_addr = "*"
listen_port = 7432
unix_socket_dir = ""
http_listen = "127.0.0.1:9930"
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
auth_user = "lookup"
auth_query = "SELECT * FROM pgbouncer.user_lookup($1)"
admin_users = ["admin"]
stats_users = ["stats", "grafana"]
pool_mode = "session"
max_client_conn = 1000
default_pool_size = 10
min_pool_size = 2
reserve_pool_size = 3
reserve_pool_timeout = 2.5
max_db_connections = 50
max_user_connections = 40
server_lifetime = "1h"
server_idle_timeout = 60
server_connect_timeout = "3s"
server_login_retry = "1s"
query_wait_timeout = 0
query_timeout = "5m"
client_login_timeout = "10s"
client_idle_timeout = "1h30m"
idle_transaction_timeout = "30s"
server_reset_query = ""
server_reset_query_always = true
ignore_startup_parameters = ["extra_float_digits"]
max_prepared_statements = 0
max_message_size = 1048576
application_name_add_host = true
client_tls_sslmode = "verify-full"
client_tls_cert_file = "server.crt"
client_tls_key_file = "server.key"
client_tls_ca_file = "ca.crt"
server_tls_sslmode = "verify-ca"
server_tls_ca_file = "ca.crt"
hold_timeout = "10s"
drain_timeout = "20s"
shutdown_timeout = "45s"
log_level = "debug"
log_format = "json"
pause_timeout_action = "cancel"
http_token = "s3cret"
peers = ["10.0.1.5:6432", "[::1]:7432", "proxy-b.internal:6432"]
consul_register = true
consul_register_addr = "consul.local:8501"
consul_register_scheme = "https"
consul_register_ca_file = "ca.crt"
consul_register_token = "reg-token"
consul_register_service = "pauseproxy-main"
consul_register_advertise = "10.0.1.4"
consul_register_tags = ["sidecar", "app"]

[databases.app]
hosts = ["10.0.0.1", "10.0.0.2:5433", "[::1]:5434", "::2", "/var/run/postgresql"]
port = 6000
dbname = "app_prod"
user = "app"
password = "inline"
pool_size = 5
pool_mode = "transaction"
min_pool_size = 1
reserve_pool = 2
max_db_connections = 8
connect_query = "SET statement_timeout = '5s'"
auth_user = "other_lookup"
application_name = "app"

[databases.ha]
discovery = "patroni"
patroni_urls = ["http://10.0.0.1:8008", "https://10.0.0.2:8008/"]
poll_interval = "2s"
fast_poll_interval = "200ms"
patroni_username = "api"
patroni_password = "api-secret"
patroni_ca_file = "ca.crt"
patroni_cert_file = "server.crt"
patroni_key_file = "server.key"

[databases.consul]
discovery = "consul"
consul_addr = "consul.service:8501"
consul_service = "pg-main"
consul_namespace = "pg"
consul_token = "token"
consul_datacenter = "dc2"
consul_scheme = "https"
consul_ca_file = "ca.crt"

[users.bob]
password = "md5d870fdc733701e62d2e02d9ab278c235"
pool_mode = "session"
max_user_connections = 3
pool_size = 2
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	abs := func(name string) string { return filepath.Join(dir, name) }
	want := Proxy{
		ListenAddrs: []string{"*"}, ListenAddr: "0.0.0.0", ListenPort: 7432, UnixSocketDir: "", HTTPListen: "127.0.0.1:9930",
		AuthType: AuthSCRAM, AuthFile: abs("userlist.txt"), AuthUser: "lookup",
		AuthQuery:  "SELECT * FROM pgbouncer.user_lookup($1)",
		AdminUsers: []string{"admin"}, StatsUsers: []string{"stats", "grafana"},
		PoolMode: PoolModeSession, MaxClientConn: 1000, DefaultPoolSize: 10, MinPoolSize: 2,
		ReservePoolSize: 3, ReservePoolTimeout: 2500 * time.Millisecond, MaxDBConnections: 50,
		MaxUserConnections: 40, ServerLifetime: time.Hour, ServerIdleTimeout: time.Minute,
		ServerConnectTimeout: 3 * time.Second, ServerLoginRetry: time.Second, QueryWaitTimeout: 0,
		QueryTimeout: 5 * time.Minute, ClientLoginTimeout: 10 * time.Second,
		ClientIdleTimeout: 90 * time.Minute, IdleTransactionTimeout: 30 * time.Second,
		ServerResetQuery: "", ServerResetQueryAlways: true,
		IgnoreStartupParams:   []string{"extra_float_digits"},
		MaxPreparedStatements: 0, MaxMessageSize: 1 << 20, LargeMessageBudget: 256 << 20, ApplicationNameAddHost: true,
		ClientTLS:   TLS{SSLMode: "verify-full", CertFile: abs("server.crt"), KeyFile: abs("server.key"), CAFile: abs("ca.crt")},
		ServerTLS:   TLS{SSLMode: "verify-ca", CAFile: abs("ca.crt")},
		HoldTimeout: 10 * time.Second, DrainTimeout: 20 * time.Second, ShutdownTimeout: 45 * time.Second,
		LogLevel: "debug", LogFormat: LogFormatJSON, LogConnections: true, LogDisconnections: true, PauseTimeoutAction: PauseTimeoutCancel, OnSplitBrain: SplitBrainHold, HTTPToken: "s3cret",
		Peers:          []string{"10.0.1.5:6432", "[::1]:7432", "proxy-b.internal:6432"},
		ConsulRegister: true, ConsulRegisterAddr: "consul.local:8501", ConsulRegisterScheme: "https",
		ConsulRegisterCAFile: abs("ca.crt"), ConsulRegisterToken: "reg-token", ConsulRegisterService: "pauseproxy-main",
		ConsulRegisterAdvertise: "10.0.1.4:7432", ConsulRegisterTags: []string{"sidecar", "app"},
	}
	if !reflect.DeepEqual(c.Proxy, want) {
		t.Errorf("Proxy = %+v\nwant  %+v", c.Proxy, want)
	}
	app := c.Databases["app"]
	wantApp := &Database{
		Name: "app", Host: "10.0.0.1", Port: 6000, DBName: "app_prod", User: "app", Password: "inline",
		Hosts:    []string{"10.0.0.1:6000", "10.0.0.2:5433", "[::1]:5434", "[::2]:6000", "/var/run/postgresql:6000"},
		PoolSize: 5, PoolMode: PoolModeTransaction, MinPoolSize: 1, ReservePool: 2, MaxDBConns: 8,
		ConnectQuery: "SET statement_timeout = '5s'", AuthUser: "other_lookup", ApplicationName: "app",
		Discovery: DiscoveryStatic, PollInterval: time.Second, FastPollInterval: 100 * time.Millisecond, OnSplitBrain: SplitBrainHold,
		TargetSessionAttrs: TargetReadWrite, ReadOnlyRouting: RoutePrimary,
	}
	if !reflect.DeepEqual(app, wantApp) {
		t.Errorf("app = %+v\nwant %+v", app, wantApp)
	}
	ha := c.Databases["ha"]
	wantHA := &Database{
		Name: "ha", Port: 5432, DBName: "ha", PoolSize: 10, MinPoolSize: 2, ReservePool: 3, MaxDBConns: 50,
		Discovery: DiscoveryPatroni, PatroniURLs: []string{"http://10.0.0.1:8008", "https://10.0.0.2:8008/"},
		PollInterval: 2 * time.Second, FastPollInterval: 200 * time.Millisecond, OnSplitBrain: SplitBrainHold,
		TargetSessionAttrs: TargetReadWrite, ReadOnlyRouting: RoutePrimary,
		PatroniUsername: "api", PatroniPassword: "api-secret",
		PatroniCAFile: abs("ca.crt"), PatroniCertFile: abs("server.crt"), PatroniKeyFile: abs("server.key"),
	}
	if !reflect.DeepEqual(ha, wantHA) {
		t.Errorf("ha = %+v\nwant %+v", ha, wantHA)
	}
	cs := c.Databases["consul"]
	if cs.ConsulAddr != "consul.service:8501" || cs.ConsulService != "pg-main" || cs.ConsulNamespace != "pg" ||
		cs.ConsulToken != "token" || cs.ConsulDatacenter != "dc2" || cs.ConsulScheme != "https" ||
		cs.ConsulCAFile != abs("ca.crt") || cs.Host != "" || cs.Hosts != nil {
		t.Errorf("consul = %+v", cs)
	}
	wantBob := &User{Name: "bob", Password: "md5d870fdc733701e62d2e02d9ab278c235", PoolMode: PoolModeSession, MaxUserConns: 3, PoolSize: 2}
	if !reflect.DeepEqual(c.Users["bob"], wantBob) {
		t.Errorf("bob = %+v", c.Users["bob"])
	}
	// An MD5 hash cannot serve SCRAM, and server_reset_query_always,
	// application_name_add_host and connect_query are not applied:
	// warnings, not failures.
	if len(c.Warnings) != 4 || !strings.Contains(c.Warnings[0], "pauseproxy.toml: proxy.server_reset_query_always: not supported") ||
		!strings.Contains(c.Warnings[1], "pauseproxy.toml: proxy.application_name_add_host: not supported yet") ||
		!strings.Contains(c.Warnings[2], "pauseproxy.toml: databases.app.connect_query: not supported yet") ||
		!strings.Contains(c.Warnings[3], "pauseproxy.toml: users.bob.password: an MD5 hash cannot be used") {
		t.Errorf("Warnings = %q", c.Warnings)
	}
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		value   string
		want    time.Duration
		problem string
	}{
		{value: `"15s"`, want: 15 * time.Second},
		{value: `"500ms"`, want: 500 * time.Millisecond},
		{value: `"1h2m3.5s"`, want: time.Hour + 2*time.Minute + 3500*time.Millisecond},
		{value: `15`, want: 15 * time.Second},
		{value: `0`, want: 0},
		{value: `0.5`, want: 500 * time.Millisecond},
		{value: `2.25`, want: 2250 * time.Millisecond},
		{value: `1e3`, want: 1000 * time.Second},
		{value: `"15"`, problem: `proxy.query_timeout: want a duration like "15s" or "500ms", or a number of seconds, got "15"`},
		{value: `"soon"`, problem: `got "soon"`},
		{value: `true`, problem: `proxy.query_timeout: want a duration like "15s" or "500ms", or a number of seconds, got a boolean`},
		{value: `[1]`, problem: `got an array`},
		{value: `-5`, problem: `proxy.query_timeout: must not be negative, got -5s`},
		{value: `"-1s"`, problem: `proxy.query_timeout: must not be negative, got -1s`},
		{value: `-0.5`, problem: `must not be negative, got -500ms`},
		{value: `10000000000`, problem: `proxy.query_timeout: 10000000000 seconds is out of range`},
		{value: `inf`, problem: `proxy.query_timeout: +Inf seconds is out of range`},
		{value: `nan`, problem: `seconds is out of range`},
	} {
		t.Run(tc.value, func(t *testing.T) {
			c, err := loadString(t, trust+"query_timeout = "+tc.value+"\n")
			problems := problemsOf(t, err)
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Proxy.QueryTimeout != tc.want {
					t.Errorf("QueryTimeout = %v, want %v", c.Proxy.QueryTimeout, tc.want)
				}
				return
			}
			if len(problems) != 1 || !strings.Contains(problems[0], "pauseproxy.toml: ") || !strings.Contains(problems[0], tc.problem) {
				t.Errorf("problems = %q, want one containing %q", problems, tc.problem)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	_, err := loadString(t, trust+`listen_prot = 6432
[databases.app]
hots = "x"
[databases.app.extra]
deep = 1
[users.bob]
passwd = "x"
[pgbouncer]
listen_port = 1
[[servers]]
name = "a"
`)
	got := problemsOf(t, err)
	want := []string{
		`pauseproxy.toml: pgbouncer: unknown key (want [proxy], [databases.<name>], [users.<name>] or [peers.<id>] tables)`,
		`pauseproxy.toml: servers: unknown key (want [proxy], [databases.<name>], [users.<name>] or [peers.<id>] tables)`,
		`pauseproxy.toml: proxy.listen_prot: unknown key (did you mean "listen_port"?)`,
		`pauseproxy.toml: databases.app.extra: unknown key`,
		`pauseproxy.toml: databases.app.hots: unknown key (did you mean "hosts"?)`,
		`pauseproxy.toml: users.bob.passwd: unknown key (did you mean "password"?)`,
	}
	assertProblems(t, got, want)
}

// assertProblems checks that got has exactly one problem ending with each
// of want (the file's directory varies), in order.
func assertProblems(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasSuffix(got[i], want[i]) || !strings.HasPrefix(got[i], "/") {
			t.Errorf("problem %d = %q\nwant     .../%s", i, got[i], want[i])
		}
	}
}

func TestLoadSyntaxAndTypeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []string
	}{
		{
			name: "syntax error has the line",
			toml: "[proxy]\nauth_type = \"trust\"\nlisten_port = = 1\n",
			want: []string{"pauseproxy.toml: line 3: "},
		},
		{
			name: "duplicate key has the line",
			toml: "[proxy]\nauth_type = \"trust\"\nauth_type = \"md5\"\n",
			want: []string{"pauseproxy.toml: line 3: "},
		},
		{
			name: "tables must be tables",
			toml: trust + "[databases]\napp = 5\n\"*\" = []\n[users]\nbob = \"x\"\n",
			want: []string{
				`pauseproxy.toml: databases."*": want a table ([databases."*"]), got an array`,
				`pauseproxy.toml: databases.app: want a table ([databases.app]), got an integer`,
				`pauseproxy.toml: users.bob: want a table ([users.bob]), got a string`,
			},
		},
		{
			name: "proxy must be a table",
			toml: "proxy = 1\n[databases.app]\n",
			want: []string{
				`pauseproxy.toml: proxy: want a table ([proxy]), got an integer`,
				`pauseproxy.toml: proxy.auth_type: "md5" needs passwords`,
			},
		},
		{
			name: "wrong types, all reported",
			toml: trust + `listen_port = "6432"
admin_users = "admin"
stats_users = ["a", 1]
server_reset_query_always = 1
listen_addr = 127
[databases.app]
pool_size = 2.5
password = 12345
`,
			want: []string{
				`pauseproxy.toml: proxy.admin_users: want an array of strings, like ["a", "b"], got a string`,
				`pauseproxy.toml: proxy.listen_addr: want a string ("127.0.0.1, ::1") or an array of strings, got an integer`,
				`pauseproxy.toml: proxy.listen_port: want an integer, got a string`,
				`pauseproxy.toml: proxy.server_reset_query_always: want true or false, got an integer`,
				`pauseproxy.toml: proxy.stats_users: element 2: want a string, got an integer`,
				`pauseproxy.toml: databases.app.password: want a string, got an integer`,
				`pauseproxy.toml: databases.app.pool_size: want an integer, got a float`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, tc.toml)
			got := problemsOf(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
			if strings.Contains(err.Error(), "12345") {
				t.Errorf("a message quotes a password: %v", err)
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"))
	got := problemsOf(t, err)
	if len(got) != 1 || !strings.HasSuffix(got[0], "missing.toml: cannot read: no such file or directory") {
		t.Errorf("problems = %q", got)
	}
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "db.pass", "from-file\n")
	writeFile(t, dir, "crlf.pass", "crlf-secret\r\n")
	writeFile(t, dir, "empty.pass", "\n")
	writeFile(t, dir, "token", "consul-token")
	t.Setenv("PP_TEST_DB_PASSWORD", "from-env")
	t.Setenv("PP_TEST_EMPTY", "")
	os.Unsetenv("PP_TEST_UNSET")

	c, err := Load(writeFile(t, dir, "pauseproxy.toml", `
[proxy]
auth_type = "trust"
[databases.env]
password_env = "PP_TEST_DB_PASSWORD"
[databases.file]
password_file = "db.pass"
[databases.crlf]
password_file = "`+filepath.Join(dir, "crlf.pass")+`"
[databases.consul]
discovery = "consul"
consul_service = "main"
consul_token_file = "token"
patroni_username = "api"
patroni_password_env = "PP_TEST_DB_PASSWORD"
[databases.patroni]
discovery = "patroni"
patroni_urls = ["http://p:8008"]
patroni_username = "api"
patroni_password_file = "db.pass"
[users.bob]
password_env = "PP_TEST_DB_PASSWORD"
[users.carol]
password_file = "db.pass"
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range []struct{ name, got, want string }{
		{"env password", c.Databases["env"].Password, "from-env"},
		{"env source", c.Databases["env"].PasswordEnv, "PP_TEST_DB_PASSWORD"},
		{"file password", c.Databases["file"].Password, "from-file"},
		{"file source", c.Databases["file"].PasswordFile, filepath.Join(dir, "db.pass")},
		{"CRLF trimmed", c.Databases["crlf"].Password, "crlf-secret"},
		{"consul token", c.Databases["consul"].ConsulToken, "consul-token"},
		{"patroni password env", c.Databases["consul"].PatroniPassword, "from-env"},
		{"patroni password file", c.Databases["patroni"].PatroniPassword, "from-file"},
		{"patroni password source", c.Databases["patroni"].PatroniPasswordFile, filepath.Join(dir, "db.pass")},
		{"user env", c.Users["bob"].Password, "from-env"},
		{"user file", c.Users["carol"].Password, "from-file"},
	} {
		if check.got != check.want {
			t.Errorf("%s = %q, want %q", check.name, check.got, check.want)
		}
	}

	_, err = Load(writeFile(t, dir, "bad.toml", `
[proxy]
auth_type = "trust"
[databases.two]
password = "inline-secret"
password_env = "PP_TEST_DB_PASSWORD"
[databases.unset]
password_env = "PP_TEST_UNSET"
[databases.emptyenv]
password_env = "PP_TEST_EMPTY"
[databases.noname]
password_env = ""
[databases.missing]
password_file = "nope.pass"
[databases.emptyfile]
password_file = "empty.pass"
[databases.consul]
discovery = "consul"
consul_service = "main"
consul_token = "t"
consul_token_file = "token"
[databases.patroni]
discovery = "patroni"
patroni_urls = ["http://p:8008"]
patroni_username = "api"
patroni_password = "inline-secret"
patroni_password_env = "PP_TEST_UNSET"
[users.bob]
password_env = "PP_TEST_UNSET"
`))
	assertProblems(t, problemsOf(t, err), []string{
		`bad.toml: databases.consul: set only one of consul_token, consul_token_env and consul_token_file`,
		`bad.toml: databases.emptyenv.password_env: environment variable PP_TEST_EMPTY is empty`,
		`bad.toml: databases.emptyfile.password_file: ` + filepath.Join(dir, "empty.pass") + ` is empty`,
		`bad.toml: databases.missing.password_file: ` + filepath.Join(dir, "nope.pass") + `: cannot read: no such file or directory`,
		`bad.toml: databases.noname.password_env: must name an environment variable`,
		`bad.toml: databases.patroni: set only one of patroni_password, patroni_password_env and patroni_password_file`,
		`bad.toml: databases.two: set only one of password, password_env and password_file`,
		`bad.toml: databases.unset.password_env: environment variable PP_TEST_UNSET is not set`,
		`bad.toml: users.bob.password_env: environment variable PP_TEST_UNSET is not set`,
	})
	for _, secret := range []string{"inline-secret", "from-env", "consul-token"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("a message quotes the secret %q:\n%v", secret, err)
		}
	}
}

func TestDatabaseFor(t *testing.T) {
	c, err := loadString(t, trust+`
[databases.app]
host = "10.0.0.1"
[databases."*"]
hosts = ["10.0.0.2", "10.0.0.3"]
pool_size = 7
`)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := c.DatabaseFor("app"); !ok || d != c.Databases["app"] {
		t.Errorf("DatabaseFor(app) = %+v, %v, want the app table", d, ok)
	}
	d, ok := c.DatabaseFor("other")
	if !ok || d.Name != "other" || d.DBName != "other" || d.PoolSize != 7 {
		t.Fatalf("DatabaseFor(other) = %+v, %v", d, ok)
	}
	d.Hosts[0] = "changed"
	if c.Databases["*"].Hosts[0] != "10.0.0.2:5432" || c.Databases["*"].Name != "*" {
		t.Errorf("DatabaseFor changed the fallback: %+v", c.Databases["*"])
	}

	c, err = loadString(t, trust+"[databases.\"*\"]\ndbname = \"fixed\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.DatabaseFor("x"); d.DBName != "fixed" {
		t.Errorf(`with dbname set on "*", DBName = %q, want "fixed"`, d.DBName)
	}

	c, err = loadString(t, trust+"[databases.app]\n")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := c.DatabaseFor("other"); ok {
		t.Errorf("DatabaseFor(other) without fallback = %+v", d)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"a", "", 1}, {"listen_prot", "listen_port", 2}, {"kitten", "sitting", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if s := suggest("zzzzzz", proxyFields); s != "" {
		t.Errorf("suggest for a far key = %q", s)
	}
	if !slices.ContainsFunc(proxyFields, func(f field[Proxy]) bool { return f.key == "listen_port" }) {
		t.Fatal("schema lost listen_port")
	}
}
