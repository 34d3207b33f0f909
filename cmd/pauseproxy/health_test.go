package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `pauseproxy health` exits 0 when /healthz (or /readyz with --ready)
// answers 200, 1 otherwise, finding the address in --addr or in the
// configuration's http_listen.
func TestHealthCommand(t *testing.T) {
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			w.Write([]byte("ok\n"))
		case r.URL.Path == "/readyz" && ready:
			w.Write([]byte("ready\n"))
		case r.URL.Path == "/readyz":
			http.Error(w, "database appdb: no verified primary", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	cfg := filepath.Join(dir, "pauseproxy.toml")
	// password_env names a variable that is not set: the probe does not
	// need secrets.
	toml := "[proxy]\nhttp_listen = \"" + addr + "\"\nauth_type = \"trust\"\n\n[databases.appdb]\nhost = \"127.0.0.1\"\npassword_env = \"PAUSEPROXY_HEALTH_TEST_UNSET\"\n"
	if err := os.WriteFile(cfg, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	noListen := filepath.Join(dir, "nolisten.toml")
	if err := os.WriteFile(noListen, []byte("[proxy]\nhttp_listen = \"\"\nauth_type = \"trust\"\n\n[databases.appdb]\nhost = \"127.0.0.1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		args  []string
		ready bool
		code  int
		out   string
	}{
		{name: "healthz", args: []string{"--addr", addr}, code: 0, out: "/healthz ok"},
		{name: "from the config", args: []string{"--config", cfg}, code: 0, out: "/healthz ok"},
		{name: "not ready", args: []string{"--ready", "--addr", addr}, code: 1, out: "503"},
		{name: "ready", args: []string{"--ready", "--config", cfg}, ready: true, code: 0, out: "/readyz ready"},
		{name: "nothing listens", args: []string{"--addr", "127.0.0.1:1", "--timeout", "1s"}, code: 1, out: "GET http://127.0.0.1:1/healthz"},
		{name: "no http_listen", args: []string{"--config", noListen}, code: 1, out: "sets no http_listen"},
		{name: "a stray argument", args: []string{"now"}, code: 2, out: `unexpected argument "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready = tc.ready
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"health"}, tc.args...), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tc.out) {
				t.Errorf("output %q, want it to contain %q", out, tc.out)
			}
		})
	}
}

func TestProbeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9930": "127.0.0.1:9930", ":9930": "127.0.0.1:9930", "0.0.0.0:9930": "127.0.0.1:9930",
		"[::]:9930": "[::1]:9930", "10.0.0.5:9930": "10.0.0.5:9930",
	} {
		if got := probeAddr(in); got != want {
			t.Errorf("probeAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
