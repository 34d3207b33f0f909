package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPauseTimeoutAction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		line    string
		want    string
		problem string
	}{
		{name: "default", want: PauseTimeoutResume},
		{name: "cancel", line: `pause_timeout_action = "cancel"`, want: PauseTimeoutCancel},
		{name: "resume", line: `pause_timeout_action = "resume"`, want: PauseTimeoutResume},
		{name: "unknown", line: `pause_timeout_action = "kill"`, problem: `proxy.pause_timeout_action: unknown value "kill" (want resume or cancel)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadString(t, trust+tc.line+"\n")
			if tc.problem != "" {
				ps := problemsOf(t, err)
				if len(ps) != 1 || !strings.HasSuffix(ps[0], tc.problem) {
					t.Fatalf("problems %q, want one ending in %q", ps, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Proxy.PauseTimeoutAction != tc.want {
				t.Fatalf("PauseTimeoutAction = %q, want %q", c.Proxy.PauseTimeoutAction, tc.want)
			}
		})
	}
}

func TestHTTPTokenForms(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "token", "from-file\n")
	t.Setenv("PP_TEST_TOKEN", "from-env")
	for _, tc := range []struct {
		name    string
		lines   string
		want    string
		problem string
	}{
		{name: "inline", lines: `http_token = "inline"`, want: "inline"},
		{name: "env", lines: `http_token_env = "PP_TEST_TOKEN"`, want: "from-env"},
		{name: "file", lines: `http_token_file = "token"`, want: "from-file"},
		{name: "two forms", lines: "http_token = \"a\"\nhttp_token_env = \"PP_TEST_TOKEN\"", problem: "proxy: set only one of http_token, http_token_env and http_token_file"},
		{name: "unset env", lines: `http_token_env = "PP_TEST_NOT_SET"`, problem: "proxy.http_token_env: environment variable PP_TEST_NOT_SET is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, dir, "pauseproxy.toml", trust+"http_listen = \"127.0.0.1:9930\"\n"+tc.lines+"\n")
			c, err := Load(path)
			if tc.problem != "" {
				ps := problemsOf(t, err)
				if len(ps) != 1 || !strings.HasSuffix(ps[0], tc.problem) {
					t.Fatalf("problems %q, want one ending in %q", ps, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Proxy.HTTPToken != tc.want {
				t.Fatalf("HTTPToken = %q, want %q", c.Proxy.HTTPToken, tc.want)
			}
			// convert writes the form the token came from, and reads back.
			out := ToTOML(c)
			if tc.name != "inline" && strings.Contains(out, tc.want) {
				t.Errorf("ToTOML leaks the token:\n%s", out)
			}
			back, err := Load(writeFile(t, dir, "back.toml", out))
			if err != nil {
				t.Fatalf("ToTOML output does not load: %v\n%s", err, out)
			}
			if back.Proxy.HTTPToken != tc.want {
				t.Errorf("after ToTOML, HTTPToken = %q, want %q", back.Proxy.HTTPToken, tc.want)
			}
		})
	}
}

func TestHTTPTokenWithoutListenWarns(t *testing.T) {
	c, err := loadString(t, trust+"http_token = \"x\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.Contains(w, "proxy.http_token: set without http_listen") }) {
		t.Fatalf("warnings %q", c.Warnings)
	}
}

func TestSettings(t *testing.T) {
	c, err := loadString(t, trust+`
admin_users = ["a", "b"]
server_idle_timeout = "1.5s"
application_name_add_host = true
http_listen = "127.0.0.1:9930"
http_token = "secret"
`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Setting{}
	var keys []string
	for _, s := range Settings(c) {
		got[s.Key] = s
		keys = append(keys, s.Key)
	}
	if len(keys) != len(proxyFields) {
		t.Fatalf("%d settings, want %d", len(keys), len(proxyFields))
	}
	for _, want := range []Setting{
		{Key: "admin_users", Value: "a,b", Default: "", Changeable: true},
		{Key: "server_idle_timeout", Value: "1.5", Default: "600", Changeable: true},
		{Key: "application_name_add_host", Value: "1", Default: "0", Changeable: true},
		{Key: "listen_port", Value: "6432", Default: "6432", Changeable: false},
		{Key: "http_token", Value: "********", Default: "", Changeable: false},
		{Key: "pause_timeout_action", Value: "resume", Default: "resume", Changeable: true},
	} {
		if got[want.Key] != want {
			t.Errorf("%s: got %+v, want %+v", want.Key, got[want.Key], want)
		}
	}
}

func TestWithSetting(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "users.txt", `"u" "p"`+"\n")
	path := writeFile(t, dir, "pauseproxy.toml", trust+`
default_pool_size = 10
[databases.inherits]
[databases.own]
pool_size = 3
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, value string
		check            func(t *testing.T, n *Config)
		problem          string
	}{
		{name: "duration in seconds", key: "query_wait_timeout", value: "2.5", check: func(t *testing.T, n *Config) {
			if n.Proxy.QueryWaitTimeout != 2500*time.Millisecond {
				t.Errorf("query_wait_timeout = %s", n.Proxy.QueryWaitTimeout)
			}
		}},
		{name: "case and spaces", key: " DRAIN_TIMEOUT ", value: "5s", check: func(t *testing.T, n *Config) {
			if n.Proxy.DrainTimeout != 5*time.Second {
				t.Errorf("drain_timeout = %s", n.Proxy.DrainTimeout)
			}
		}},
		{name: "inherited pool size follows", key: "default_pool_size", value: "40", check: func(t *testing.T, n *Config) {
			if n.Databases["inherits"].PoolSize != 40 || n.Databases["own"].PoolSize != 3 {
				t.Errorf("pool sizes %d, %d; want 40, 3", n.Databases["inherits"].PoolSize, n.Databases["own"].PoolSize)
			}
			if c.Databases["inherits"].PoolSize != 10 {
				t.Errorf("the original config changed")
			}
		}},
		{name: "list", key: "admin_users", value: "x, y", check: func(t *testing.T, n *Config) {
			if !slices.Equal(n.Proxy.AdminUsers, []string{"x", "y"}) {
				t.Errorf("admin_users = %q", n.Proxy.AdminUsers)
			}
		}},
		{name: "relative path", key: "auth_file", value: "users.txt", check: func(t *testing.T, n *Config) {
			if n.Proxy.AuthFile != filepath.Join(dir, "users.txt") {
				t.Errorf("auth_file = %q", n.Proxy.AuthFile)
			}
		}},
		{name: "validated", key: "pause_timeout_action", value: "later", problem: `proxy.pause_timeout_action: unknown value "later" (want resume or cancel)`},
		{name: "bad type", key: "default_pool_size", value: "many", problem: `proxy.default_pool_size: want an integer, got "many"`},
		{name: "unknown", key: "default_pool_sise", value: "1", problem: `proxy.default_pool_sise: unknown key (did you mean "default_pool_size"?)`},
		{name: "listener", key: "listen_port", value: "7000", problem: "proxy.listen_port: cannot be changed at run time; change the configuration file and restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := WithSetting(c, tc.key, tc.value)
			if tc.problem != "" {
				ps := problemsOf(t, err)
				if len(ps) != 1 || !strings.HasSuffix(ps[0], tc.problem) {
					t.Fatalf("problems %q, want one ending in %q", ps, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, n)
		})
	}
}
