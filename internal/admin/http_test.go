package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// serveHTTP serves p's HTTP endpoints until the test ends.
func serveHTTP(t *testing.T, p *testProxy, readiness admin.Readiness) string {
	t.Helper()
	srv := httptest.NewServer(admin.NewHTTPHandler(admin.HTTPOptions{
		Router: p.Router, Pauser: p.Pauser, Accepting: p.Server.Accepting, Readiness: readiness,
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// call makes a request and returns the status and body.
func call(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// /readyz turns 503 when the backend goes away; /healthz stays 200.
func TestReadiness(t *testing.T) {
	backend := pgtest.Require(t, pgtest.Options{})
	p := startProxy(t, proxyOptions{DBPort: backend.Port})
	url := serveHTTP(t, p, &admin.TargetProbe{Router: p.Router, TTL: 100 * time.Millisecond})
	if code, body := call(t, "GET", url+"/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := call(t, "GET", url+"/readyz", ""); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz with the backend up: %d %q", code, body)
	}
	if err := backend.Stop(); err != nil {
		t.Fatal(err)
	}
	var body string
	proxytest.Eventually(t, 5*time.Second, "/readyz 503", func() bool {
		var code int
		code, body = call(t, "GET", url+"/readyz", "")
		return code == 503
	})
	if !strings.Contains(body, "database appdb: server 127.0.0.1:") || !strings.Contains(body, "does not accept connections") {
		t.Fatalf("/readyz body %q", body)
	}
	if code, _ := call(t, "GET", url+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz with the backend down: %d", code)
	}
}

func TestReadinessFollowsTheProxy(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	url := serveHTTP(t, p, nil)
	if code, body := call(t, "GET", url+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	p.Server.StopAccepting()
	if code, body := call(t, "GET", url+"/readyz", ""); code != 503 || !strings.Contains(body, "does not accept clients") {
		t.Fatalf("/readyz after StopAccepting: %d %q", code, body)
	}
}

func TestHTTPPauseResume(t *testing.T) {
	t.Run("no token configured", func(t *testing.T) {
		p := startProxy(t, proxyOptions{})
		url := serveHTTP(t, p, nil)
		if code, body := call(t, "POST", url+"/pause", "anything"); code != 403 || !strings.Contains(body, "set http_token") {
			t.Fatalf("/pause without http_token: %d %s", code, body)
		}
	})
	p := startProxy(t, proxyOptions{Extra: `http_token = "s3cret"`})
	url := serveHTTP(t, p, nil)
	for _, token := range []string{"", "wrong"} {
		if code, _ := call(t, "POST", url+"/pause", token); code != 401 {
			t.Fatalf("/pause with token %q: %d, want 401", token, code)
		}
	}
	if code, _ := call(t, "GET", url+"/pause", "s3cret"); code != 405 {
		t.Fatalf("GET /pause: %d, want 405", code)
	}
	if p.Pauser.PausedAll() {
		t.Fatal("paused by an unauthorized request")
	}
	code, body := call(t, "POST", url+"/pause?expire=60s", "s3cret")
	var res map[string]any
	json.Unmarshal([]byte(body), &res)
	if code != 200 || res["paused"] != "(all databases)" {
		t.Fatalf("/pause: %d %s", code, body)
	}
	adm := console(t, p.Port, adminUser, adminPass)
	if st := one(t, adm, "SHOW STATE"); st.Rows[1][1] != "yes" {
		t.Fatalf("SHOW STATE after HTTP pause: %v", st.Rows)
	}
	if code, body := call(t, "POST", url+"/pause?db=nodb", "s3cret"); code != 404 || !strings.Contains(body, "no such database") {
		t.Fatalf("/pause?db=nodb: %d %s", code, body)
	}
	if code, body := call(t, "POST", url+"/resume", "s3cret"); code != 200 || !strings.Contains(body, `"was_paused":true`) {
		t.Fatalf("/resume: %d %s", code, body)
	}
	if p.Pauser.PausedAll() {
		t.Fatal("still paused after /resume")
	}

	// A PAUSE that times out is a 409 with its SQLSTATE.
	c := p.connect(t)
	if _, err := c.Exec(context.Background(), "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	code, body = call(t, "POST", url+"/pause?db=appdb&timeout=200ms", "s3cret")
	if code != 409 || !strings.Contains(body, `"sqlstate":"57014"`) {
		t.Fatalf("/pause with a transaction open: %d %s", code, body)
	}
	if code, body := call(t, "POST", url+"/pause?timeout=soon", "s3cret"); code != 400 {
		t.Fatalf("/pause?timeout=soon: %d %s", code, body)
	}
}
