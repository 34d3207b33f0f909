package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadPgBouncerINI(t *testing.T) {
	c, err := LoadPgBouncerINI("testdata/pgbouncer.ini")
	if err != nil {
		t.Fatal(err)
	}
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}

	p := c.Proxy
	for _, check := range []struct {
		name      string
		got, want any
	}{
		{"listen_addr = * is all addresses", p.ListenAddr, "0.0.0.0"},
		{"listen_port", p.ListenPort, 6432},
		{"unix_socket_dir", p.UnixSocketDir, "/tmp"},
		{"auth_type", p.AuthType, AuthMD5},
		{"auth_file relative to the ini", p.AuthFile, filepath.Join(testdata, "userlist.txt")},
		{"auth_user", p.AuthUser, "pgbouncer_auth"},
		{"admin_users list", p.AdminUsers, []string{"postgres", "admin"}},
		{"stats_users list", p.StatsUsers, []string{"stats_collector"}},
		{"pool_mode", p.PoolMode, PoolModeTransaction},
		{"ignore_startup_parameters", p.IgnoreStartupParams, []string{"extra_float_digits", "options"}},
		{"max_client_conn", p.MaxClientConn, 500},
		{"default_pool_size", p.DefaultPoolSize, 25},
		{"seconds", p.ReservePoolTimeout, 3 * time.Second},
		{"server_lifetime", p.ServerLifetime, 30 * time.Minute},
		{"fractional seconds", p.ServerIdleTimeout, 300500 * time.Millisecond},
		{"query_wait_timeout", p.QueryWaitTimeout, time.Minute},
		{"from %include inside [pgbouncer]", p.ServerConnectTimeout, 5 * time.Second},
		{"sub-second from %include", p.ClientLoginTimeout, 500 * time.Millisecond},
		{"application_name_add_host = 1", p.ApplicationNameAddHost, true},
		{"max_prepared_statements", p.MaxPreparedStatements, 100},
		{"max_packet_size is max_message_size", p.MaxMessageSize, 16 << 20},
		{"verbose = 1 is debug", p.LogLevel, "debug"},
		{"untouched default", p.ServerLoginRetry, 15 * time.Second},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s: got %v, want %v", check.name, check.got, check.want)
		}
	}

	wantDBs := map[string]*Database{
		"app": {
			Name: "app", Host: "10.0.0.11", Hosts: []string{"10.0.0.11:5432"}, Port: 5432, DBName: "app_production",
			PoolSize: 40, ReservePool: 5,
		},
		"reporting": {
			Name: "reporting", Host: "10.0.0.12", Hosts: []string{"10.0.0.12:5433", "10.0.0.13:5433"}, Port: 5433, DBName: "reporting",
			User: "report", Password: "s3cret with 'quote", PoolSize: 25, PoolMode: PoolModeSession,
			ApplicationName: "reporting",
		},
		"legacy": {
			Name: "legacy", Host: "/tmp", Hosts: []string{"/tmp:5432"}, Port: 5432, DBName: "legacy", PoolSize: 25,
			ConnectQuery: "SET search_path TO legacy, public",
		},
		"odd name": {
			Name: "odd name", Host: "db.internal", Hosts: []string{"db.internal:5432"}, Port: 5432, DBName: "odd name",
			PoolSize: 25, AuthUser: "pgbouncer_auth", MinPoolSize: 2, MaxDBConns: 50, ReservePool: 3,
		},
		"*": {
			Name: "*", Host: "10.0.0.11", Hosts: []string{"10.0.0.11:5432"}, Port: 5432, PoolSize: 25,
		},
	}
	for _, d := range wantDBs {
		d.Discovery = DiscoveryStatic
		d.PollInterval, d.FastPollInterval = time.Second, 100*time.Millisecond
		d.OnSplitBrain = SplitBrainHold
		// An ini entry without target_session_attrs connects where it
		// says, as PgBouncer does.
		d.TargetSessionAttrs, d.ReadOnlyRouting = TargetAny, RoutePrimary
	}
	if !reflect.DeepEqual(c.Databases, wantDBs) {
		for name, d := range c.Databases {
			if !reflect.DeepEqual(d, wantDBs[name]) {
				t.Errorf("databases %q = %+v\nwant %+v", name, d, wantDBs[name])
			}
		}
		if len(c.Databases) != len(wantDBs) {
			t.Errorf("%d databases, want %d", len(c.Databases), len(wantDBs))
		}
	}
	wantUsers := map[string]*User{
		"batch":  {Name: "batch", PoolMode: PoolModeSession, MaxUserConns: 10},
		"report": {Name: "report", PoolSize: 5},
	}
	if !reflect.DeepEqual(c.Users, wantUsers) {
		t.Errorf("Users = %+v", c.Users)
	}

	wantWarnings := []string{
		"testdata/pgbouncer.ini: databases.legacy.client_encoding: not supported by pauseproxy, ignored (the client's own startup parameter applies)",
		"testdata/pgbouncer-users.ini: users.report.query_timeout: not supported by pauseproxy, ignored (set query_timeout in [pgbouncer])",
		"testdata/pgbouncer.ini: pgbouncer.logfile: not supported by pauseproxy, ignored (pauseproxy logs to stderr)",
		"testdata/pgbouncer.ini: pgbouncer.pidfile: not supported by pauseproxy, ignored (pauseproxy does not daemonize)",
		"testdata/pgbouncer.ini: pgbouncer.so_reuseport: not supported by pauseproxy, ignored (pauseproxy uses every core in one process)",
		"testdata/pgbouncer.ini: pgbouncer.tcp_keepalive: not supported by pauseproxy, ignored (pauseproxy always enables TCP keepalive on client connections, with the operating system's timings)",
		"testdata/pgbouncer.ini: pgbouncer.pkt_buf: not supported by pauseproxy, ignored",
		"testdata/pgbouncer.ini: pgbouncer.stats_period: not supported by pauseproxy, ignored (pauseproxy exports Prometheus metrics instead)",
		"testdata/pgbouncer.ini: pgbouncer.application_name_add_host: not supported yet: application_name is passed on unchanged",
		"testdata/pgbouncer.ini: databases.legacy.connect_query: not supported yet: new server connections do not run it",
	}
	if !reflect.DeepEqual(c.Warnings, wantWarnings) {
		t.Errorf("Warnings:\n%s\nwant:\n%s", strings.Join(c.Warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	// log_connections = 1 and log_disconnections = 0 carry PgBouncer's
	// meaning.
	if !c.Proxy.LogConnections || c.Proxy.LogDisconnections {
		t.Errorf("log_connections %v, log_disconnections %v; want true, false", c.Proxy.LogConnections, c.Proxy.LogDisconnections)
	}
}

// PgBouncer defaults that differ from pauseproxy's keep the ini's meaning.
func TestINIPgBouncerDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadPgBouncerINI(writeFile(t, dir, "pgbouncer.ini", `
[databases]
app =
[pgbouncer]
auth_type = trust
unix_socket_dir = `+dir+`
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.ListenAddr != "" {
		t.Errorf("ListenAddr = %q, want \"\" (PgBouncer listens on TCP only with listen_addr)", c.Proxy.ListenAddr)
	}
	if c.Proxy.PoolMode != PoolModeSession {
		t.Errorf("PoolMode = %q, want session (PgBouncer's default)", c.Proxy.PoolMode)
	}
	if got := c.Databases["app"].Host; got != dir {
		t.Errorf("database without host: Host = %q, want the Unix socket dir %q", got, dir)
	}
}

func TestINIProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // pgbouncer.ini and what it includes
		want  []string          // problems, each as it follows the directory
	}{
		{
			name: "syntax",
			files: map[string]string{"pgbouncer.ini": `
orphan = 1
[pgbouncer
[mystery]
x = 1
[pgbouncer]
auth_type = trust
no equals sign
 = value
%define x
%include
"quoted" = 1
[databases]
"bad"quote" = host=x
`},
			want: []string{
				"pgbouncer.ini: line 2: setting outside any section",
				"pgbouncer.ini: line 3: want [section]",
				"pgbouncer.ini: line 4: unknown section [mystery] (want [pgbouncer], [databases], [users] or [peers])",
				"pgbouncer.ini: line 8: want key = value",
				"pgbouncer.ini: line 9: empty key",
				"pgbouncer.ini: line 10: unknown directive %define (want %include)",
				"pgbouncer.ini: line 11: %include needs a file name",
				`pgbouncer.ini: line 14: bad quoted name: want "name" with "" for a double quote`,
				`pgbouncer.ini: pgbouncer."\"quoted\"": unknown PgBouncer setting`,
			},
		},
		{
			name: "settings",
			files: map[string]string{"pgbouncer.ini": `
[pgbouncer]
auth_type = trust
listen_port = many
listen_addr = 127.0.0.1, 10.0.0.1:6432
server_lifetime = forever
application_name_add_host = maybe
pool_mode = statement
listen_prot = 1
`},
			want: []string{
				`pgbouncer.ini: pgbouncer.listen_port: want an integer, got "many"`,
				`pgbouncer.ini: pgbouncer.server_lifetime: want a number of seconds, got "forever"`,
				`pgbouncer.ini: pgbouncer.application_name_add_host: want 0 or 1, got "maybe"`,
				`pgbouncer.ini: pgbouncer.listen_prot: unknown PgBouncer setting (did you mean "listen_port"?)`,
				`pgbouncer.ini: pgbouncer.listen_addr: entry "10.0.0.1:6432": want an IP address, a host name or "*", without port (see listen_port)`,
				`pgbouncer.ini: pgbouncer.pool_mode: "statement" is not supported by pauseproxy (want session or transaction)`,
			},
		},
		{
			name: "databases and users",
			files: map[string]string{"pgbouncer.ini": `
[pgbouncer]
auth_type = any
[databases]
pgbouncer = host=x
a = host='unterminated password=hunter2
b = host=x port=abc pool_size=
c = host=x colour=blue
[users]
u = pool_mode=statement max_user_connections=many
v = password=x
`},
			want: []string{
				`pgbouncer.ini: databases.a: connection string: host: missing closing single quote`,
				`pgbouncer.ini: databases.b: connection string: pool_size: empty value`,
				`pgbouncer.ini: databases.c.colour: unknown connection parameter`,
				`pgbouncer.ini: users.u.max_user_connections: want an integer, got "many"`,
				`pgbouncer.ini: users.v.password: unknown user setting`,
				`pgbouncer.ini: pgbouncer.auth_type: "any" is not supported by pauseproxy (want trust, md5, scram-sha-256, plain or hba)`,
				`pgbouncer.ini: databases.pgbouncer: the name "pgbouncer" is reserved for the admin console`,
				`pgbouncer.ini: users.u.pool_mode: "statement" is not supported by pauseproxy (want session or transaction)`,
			},
		},
		{
			name: "include loop",
			files: map[string]string{
				"pgbouncer.ini": "[pgbouncer]\nauth_type = trust\n%include a.ini\n",
				"a.ini":         "%include b.ini\n",
				"b.ini":         "%include a.ini\n",
			},
			want: []string{"b.ini: line 1: %include nested more than 10 deep (an include loop?)"},
		},
		{
			name: "include missing",
			files: map[string]string{
				"pgbouncer.ini": "[pgbouncer]\nauth_type = trust\n%include missing.ini\n",
			},
			want: []string{"missing.ini: cannot read: no such file or directory"},
		},
		{
			name: "a problem in an included file names it",
			files: map[string]string{
				"pgbouncer.ini":    "[pgbouncer]\nauth_type = trust\n%include conf.d/extra.ini\n",
				"conf.d/extra.ini": "listen_port = 0\n",
			},
			want: []string{"conf.d/extra.ini: pgbouncer.listen_port: must be 1..65535, got 0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				writeFile(t, dir, name, content)
			}
			_, err := LoadPgBouncerINI(filepath.Join(dir, "pgbouncer.ini"))
			got := problemsOf(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(tc.want), strings.Join(tc.want, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasSuffix(got[i], "/"+w) {
					t.Errorf("problem %d = %q\nwant .../%s", i, got[i], w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("a message quotes a password: %v", err)
			}
		})
	}
}

func TestINIWarnings(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadPgBouncerINI(writeFile(t, dir, "pgbouncer.ini", `
[pgbouncer]
auth_type = trust
listen_port = 6000
listen_port = 6001
; silent: the value is what pauseproxy does anyway
log_connections = 1
syslog = 0
so_reuseport = 0
conffile = /etc/pgbouncer/pgbouncer.ini
client_tls_ciphers = default
dns_zone_check_period = 0.0
; warned
syslog = 1
user = postgres
[peers]
1 = host=/tmp/pgbouncer1
[databases]
app = host=x load_balance_hosts=disable
[users]
u = reserve_pool_size=2
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.ListenPort != 6001 {
		t.Errorf("ListenPort = %d, want the later 6001", c.Proxy.ListenPort)
	}
	want := []string{
		"pgbouncer.ini: pgbouncer.listen_port: set again at line 5 (first at " + dir + "/pgbouncer.ini: line 4); the later one wins",
		"pgbouncer.ini: pgbouncer.syslog: set again at line 14 (first at " + dir + "/pgbouncer.ini: line 8); the later one wins",
		"pgbouncer.ini: pgbouncer.syslog: not supported by pauseproxy, ignored (pauseproxy logs to stderr)",
		"pgbouncer.ini: pgbouncer.user: not supported by pauseproxy, ignored (run pauseproxy as the intended user)",
		"pgbouncer.ini: databases.app.load_balance_hosts: not supported by pauseproxy, ignored",
		"pgbouncer.ini: users.u.reserve_pool_size: not supported by pauseproxy, ignored",
		"pgbouncer.ini: peers: used only with peer_id set: cancel requests are not forwarded",
	}
	if len(c.Warnings) != len(want) {
		t.Fatalf("Warnings:\n%s\nwant %d", strings.Join(c.Warnings, "\n"), len(want))
	}
	for i, w := range want {
		if !strings.HasSuffix(c.Warnings[i], "/"+w) {
			t.Errorf("warning %d = %q\nwant .../%s", i, c.Warnings[i], w)
		}
	}
}

func TestINIUnreadable(t *testing.T) {
	_, err := LoadPgBouncerINI(filepath.Join(t.TempDir(), "pgbouncer.ini"))
	got := problemsOf(t, err)
	if len(got) != 1 || !strings.HasSuffix(got[0], "pgbouncer.ini: cannot read: no such file or directory") {
		t.Errorf("problems = %q", got)
	}
}

func TestParseINIConnString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		err  string
	}{
		{in: "", want: map[string]string{}},
		{in: "   ", want: map[string]string{}},
		{in: "host=h port=5432", want: map[string]string{"host": "h", "port": "5432"}},
		{in: " host = h\tport= 1 ", want: map[string]string{"host": "h", "port": "1"}},
		{in: "password='a b' user=u", want: map[string]string{"password": "a b", "user": "u"}},
		{in: "password='it''s' x=1", want: map[string]string{"password": "it's", "x": "1"}},
		{in: "q='''quoted'''", want: map[string]string{"q": "'quoted'"}},
		{in: "connect_query='SET x = 1; SET y = ''a'''", want: map[string]string{"connect_query": "SET x = 1; SET y = 'a'"}},
		{in: "host=a host=b", want: map[string]string{"host": "b"}},
		{in: "a=b=c", want: map[string]string{"a": "b=c"}},
		{in: "host", err: "connection string: at offset 0: want key=value"},
		{in: "host=h port", err: "connection string: at offset 7: want key=value"},
		{in: "=x", err: "connection string: at offset 0: want key=value"},
		{in: "host=", err: "connection string: host: empty value"},
		{in: "host=''", err: "connection string: host: empty value"},
		{in: "password='secret", err: "connection string: password: missing closing single quote"},
		{in: "password='secret'x", err: "connection string: password: want a space after the closing quote"},
	} {
		got, err := ParseINIConnString(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseINIConnString(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseINIConnString(%q) error quotes the value: %v", tc.in, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseINIConnString(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
}
