package config

import (
	"reflect"
	"strings"
	"testing"
)

// listen_addr as PgBouncer takes it: one address, a comma-separated list,
// "*", host names and IPv6; in TOML also an array of strings.
func TestListenAddrForms(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value string // the TOML value
		want  []string
		first string // ListenAddr
	}{
		{name: "default", value: "", want: []string{"127.0.0.1"}, first: "127.0.0.1"},
		{name: "one address", value: `"10.0.0.1"`, want: []string{"10.0.0.1"}, first: "10.0.0.1"},
		{name: "comma list", value: `"127.0.0.1, ::1"`, want: []string{"127.0.0.1", "::1"}, first: "127.0.0.1"},
		{name: "array", value: `["::1", " 127.0.0.1 ", "db-proxy.internal"]`, want: []string{"::1", "127.0.0.1", "db-proxy.internal"}, first: "::1"},
		{name: "bracketed IPv6", value: `"[::1]"`, want: []string{"::1"}, first: "::1"},
		{name: "every address", value: `"*"`, want: []string{"*"}, first: "0.0.0.0"},
		{name: "none", value: `""`, want: nil, first: ""},
		{name: "empty array", value: `[]`, want: nil, first: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := trust
			if tc.value != "" {
				body += "listen_addr = " + tc.value + "\n"
			}
			c, err := loadString(t, body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Proxy.ListenAddrs, tc.want) || c.Proxy.ListenAddr != tc.first {
				t.Errorf("ListenAddrs %q, ListenAddr %q; want %q, %q", c.Proxy.ListenAddrs, c.Proxy.ListenAddr, tc.want, tc.first)
			}
			roundTrip(t, c)
		})
	}
}

func TestListenAddrProblems(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        []string
	}{
		{name: "port", value: `"10.0.0.1:6432"`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: entry "10.0.0.1:6432": want an IP address, a host name or "*", without port (see listen_port)`}},
		{name: "empty entry", value: `"127.0.0.1,,::1"`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: entry 2 is empty`}},
		{name: "star and more", value: `"*, 127.0.0.1"`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: "*" is every address already: list nothing else with it`}},
		{name: "twice", value: `["::1", "::1"]`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: "::1" is listed twice`}},
		{name: "comma in an element", value: `["127.0.0.1, ::1"]`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: element 1: one address per element, got "127.0.0.1, ::1"`}},
		{name: "not a string", value: `["::1", 5]`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: element 2: want a string, got an integer`}},
		{name: "bad name", value: `"db proxy"`,
			want: []string{`pauseproxy.toml: proxy.listen_addr: entry "db proxy": want an IP address, a host name or "*", without port (see listen_port)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, trust+"listen_addr = "+tc.value+"\n")
			assertProblems(t, problemsOf(t, err), tc.want)
		})
	}
}

func TestListenAddrINI(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadPgBouncerINI(writeFile(t, dir, "pgbouncer.ini", "[databases]\n[pgbouncer]\nauth_type = trust\nlisten_addr = 127.0.0.1, ::1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1", "::1"}; !reflect.DeepEqual(c.Proxy.ListenAddrs, want) {
		t.Errorf("ListenAddrs = %q, want %q", c.Proxy.ListenAddrs, want)
	}
	out := roundTrip(t, c)
	if !strings.Contains(out, `listen_addr = ["127.0.0.1", "::1"]`) {
		t.Errorf("ToTOML does not write the list:\n%s", out)
	}
	for _, s := range Settings(c) {
		if s.Key == "listen_addr" && s.Value != "127.0.0.1,::1" {
			t.Errorf("SHOW CONFIG listen_addr = %q", s.Value)
		}
	}

	_, err = LoadPgBouncerINI(writeFile(t, dir, "bad.ini", "[databases]\n[pgbouncer]\nauth_type = trust\nlisten_addr = 127.0.0.1, localhost:6432\n"))
	assertProblems(t, problemsOf(t, err), []string{`bad.ini: pgbouncer.listen_addr: entry "localhost:6432": want an IP address, a host name or "*", without port (see listen_port)`})
}

// http_listen naming a host alone listens on DefaultHTTPPort, 9930: not
// pgbouncer_exporter's 9127 nor postgres_exporter's 9187.
func TestHTTPListenDefaultPort(t *testing.T) {
	if DefaultHTTPPort == 9127 || DefaultHTTPPort == 9187 {
		t.Fatalf("DefaultHTTPPort %d is an exporter's default", DefaultHTTPPort)
	}
	for value, want := range map[string]string{
		"127.0.0.1":      "127.0.0.1:9930",
		"::1":            "[::1]:9930",
		"[::1]":          "[::1]:9930",
		"localhost":      "localhost:9930",
		"0.0.0.0:9100":   "0.0.0.0:9100",
		":9930":          ":9930",
		"127.0.0.1:9930": "127.0.0.1:9930",
	} {
		c, err := loadString(t, trust+"http_listen = \""+value+"\"\n")
		if err != nil {
			t.Errorf("http_listen = %q: %v", value, err)
			continue
		}
		if c.Proxy.HTTPListen != want {
			t.Errorf("http_listen = %q: HTTPListen %q, want %q", value, c.Proxy.HTTPListen, want)
		}
		roundTrip(t, c)
	}
}
