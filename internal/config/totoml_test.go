package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// roundTrip writes c with ToTOML, loads the result and checks that it
// equals c (File and Warnings aside). It returns the TOML.
func roundTrip(t *testing.T, c *Config) string {
	t.Helper()
	out := ToTOML(c)
	c2, err := Load(writeFile(t, t.TempDir(), "converted.toml", out))
	if err != nil {
		t.Fatalf("Load(ToTOML(c)): %v\n%s", err, out)
	}
	a, b := *c, *c2
	a.File, b.File = "", ""
	a.Warnings, b.Warnings = nil, nil
	if !reflect.DeepEqual(a.Proxy, b.Proxy) {
		t.Errorf("proxy differs after the round trip:\n%+v\n%+v", a.Proxy, b.Proxy)
	}
	for name := range a.Databases {
		if !reflect.DeepEqual(a.Databases[name], b.Databases[name]) {
			t.Errorf("database %q differs after the round trip:\n%+v\n%+v", name, a.Databases[name], b.Databases[name])
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("config differs after the round trip:\n%+v\n%+v\nTOML:\n%s", a, b, out)
	}
	return out
}

func TestToTOMLRoundTripINI(t *testing.T) {
	c, err := LoadPgBouncerINI("testdata/pgbouncer.ini")
	if err != nil {
		t.Fatal(err)
	}
	out := roundTrip(t, c)

	for _, want := range []string{
		// Warnings become comments.
		"# warning: testdata/pgbouncer.ini: pgbouncer.logfile: not supported by pauseproxy, ignored",
		// Durations are strings, in seconds.
		`server_lifetime = "1800s"`,
		`server_idle_timeout = "300.5s"`,
		`client_login_timeout = "500ms"`,
		// PgBouncer defaults kept.
		"[databases.\"*\"]\nhost = \"10.0.0.11\"\n",
		`hosts = ["10.0.0.12:5433", "10.0.0.13:5433"]`,
		// An inline secret stays inline, flagged.
		"# password was given inline in the source; consider password_env or password_file\npassword = \"s3cret with 'quote\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ToTOML output lacks %q:\n%s", want, out)
		}
	}
	// Defaults are left out.
	for _, absent := range []string{"listen_port", "server_login_retry", "discovery", "poll_interval", "auth_query"} {
		if strings.Contains(out, absent+" =") {
			t.Errorf("ToTOML wrote the default %s:\n%s", absent, out)
		}
	}
}

func TestToTOMLRoundTripTOML(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "db.pass", "file-secret\n")
	writeFile(t, dir, "userlist.txt", `"a" "b"`)
	t.Setenv("PP_TEST_TOKEN", "env-secret")
	c, err := Load(writeFile(t, dir, "pauseproxy.toml", `
[proxy]
auth_file = "userlist.txt"
listen_addr = ""
http_listen = ":9930"
admin_users = ["admin", "we\"ird\\name"]
ignore_startup_parameters = []
reserve_pool_timeout = 0.25
query_timeout = "1.5s"
idle_transaction_timeout = "1ns"
server_reset_query = "DISCARD ALL; -- tab\there\nnewline \u0001 é"
[databases.app]
hosts = ["h1", "h2:5433"]
password_file = "db.pass"
pool_size = 20
[databases."my db"]
host = "/var/run/postgresql"
port = 5433
password = "inline"
[databases.one]
hosts = ["[::1]:7000"]
[databases.ha]
discovery = "patroni"
patroni_urls = ["https://p1:8008"]
patroni_username = "api"
patroni_password_file = "db.pass"
patroni_ca_file = "db.pass"
[databases.c]
discovery = "consul"
consul_service = "main"
consul_token_env = "PP_TEST_TOKEN"
consul_addr = "consul:8500"
patroni_username = "api"
patroni_password = "api-inline"
[users.bob]
password_env = "PP_TEST_TOKEN"
pool_size = 3
[users.empty]
`))
	if err != nil {
		t.Fatal(err)
	}
	if one := c.Databases["one"]; one.Host != "::1" || one.Port != 7000 || !reflect.DeepEqual(one.Hosts, []string{"[::1]:7000"}) {
		t.Errorf("hosts with one entry: Host, Port, Hosts = %q, %d, %q", one.Host, one.Port, one.Hosts)
	}
	if app := c.Databases["app"]; app.Host != "h1" || app.Port != 5432 {
		t.Errorf("hosts: Host, Port = %q, %d, want the first entry h1, 5432", app.Host, app.Port)
	}
	out := roundTrip(t, c)
	for _, want := range []string{
		"[databases.app]\nhosts = [\"h1:5432\", \"h2:5433\"]\npassword_file",
		"[databases.one]\nhost = \"::1\"\nport = 7000\n",
		"[databases.\"my db\"]\nhost = \"/var/run/postgresql\"\nport = 5433\n",
		`password_file = "` + dir + `/db.pass"`,
		`consul_token_env = "PP_TEST_TOKEN"`,
		`patroni_password_file = "` + dir + `/db.pass"`,
		"# patroni_password was given inline in the source; consider patroni_password_env or patroni_password_file\npatroni_password = \"api-inline\"\n",
		"[users.empty]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ToTOML output lacks %q:\n%s", want, out)
		}
	}
	// Secrets from the environment or a file are not written.
	for _, secret := range []string{"file-secret", "env-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("ToTOML wrote the secret %q:\n%s", secret, out)
		}
	}
	// pool_size = 20 is the default (default_pool_size): left out.
	if strings.Contains(out, "pool_size = 20") {
		t.Errorf("ToTOML wrote a default pool_size:\n%s", out)
	}
}

func TestToTOMLDefaultsOnly(t *testing.T) {
	c, err := loadString(t, trust)
	if err != nil {
		t.Fatal(err)
	}
	out := roundTrip(t, c)
	if !strings.HasSuffix(out, "\n[proxy]\nauth_type = \"trust\"\n") {
		t.Errorf("ToTOML of a default config:\n%s", out)
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{15 * time.Second, "15s"},
		{time.Hour, "3600s"},
		{500 * time.Millisecond, "500ms"},
		{1500 * time.Millisecond, "1.5s"},
		{300500 * time.Millisecond, "300.5s"},
		{1001 * time.Millisecond, "1.001s"},
		{-1500 * time.Millisecond, "-1.5s"},
		{time.Nanosecond, "1ns"},
		{1500 * time.Microsecond, "1.5ms"},
	} {
		got := formatDuration(tc.d)
		if got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != tc.d {
			t.Errorf("ParseDuration(%q) = %v, %v, want %v", got, back, err, tc.d)
		}
	}
}

func TestTOMLString(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "é ✓ 🐘", "$1 'single'"} {
		var v struct{ S string }
		if _, err := toml.Decode("S = "+tomlString(s), &v); err != nil {
			t.Errorf("tomlString(%q) = %s: %v", s, tomlString(s), err)
			continue
		}
		if v.S != s {
			t.Errorf("tomlString(%q) reads back as %q", s, v.S)
		}
	}
	if got := tomlString("\xff"); got != "\"\uFFFD\"" {
		t.Errorf("invalid UTF-8: %q", got)
	}
}
