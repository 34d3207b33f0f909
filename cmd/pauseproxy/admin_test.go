package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// writeAdminConfig writes a config with the console's users and the HTTP
// endpoints, and returns its path, the proxy's port and the HTTP address.
func writeAdminConfig(t *testing.T) (string, int, string) {
	t.Helper()
	dir := t.TempDir()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(`"app" "apppass"`+"\n"+`"admin" "adminpass"`+"\n"), 0o600)
	path := filepath.Join(dir, "pauseproxy.toml")
	body := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
http_listen = "127.0.0.1:%d"
http_token = "tok"
auth_type = "md5"
auth_file = "userlist.txt"
admin_users = ["admin"]
default_pool_size = 4
shutdown_timeout = "5s"

[databases.postgres]
host = "127.0.0.1"
port = %d
`, port, httpPort, pg.Port)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, port, fmt.Sprintf("http://127.0.0.1:%d", httpPort)
}

// adminExec runs one console command on the binary and returns the first
// column of each row of its last result set.
func adminExec(t *testing.T, port int, sql string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=admin password=adminpass dbname=pgbouncer sslmode=disable", port))
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, row := range res[len(res)-1].Rows {
		var cells []string
		for _, v := range row {
			cells = append(cells, string(v))
		}
		out = append(out, strings.Join(cells, "|"))
	}
	return out, nil
}

func mustAdmin(t *testing.T, port int, sql string) []string {
	t.Helper()
	out, err := adminExec(t, port, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func pausedState(t *testing.T, port int) string {
	t.Helper()
	for _, row := range mustAdmin(t, port, "SHOW STATE") {
		if v, ok := strings.CutPrefix(row, "paused|"); ok {
			return v
		}
	}
	return "?"
}

func httpDo(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func eventuallyTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The binary wires the console, the signals and the HTTP endpoints to one
// PAUSE.
func TestConsoleSignalsAndHTTP(t *testing.T) {
	path, port, web := writeAdminConfig(t)
	cmd, logs := startBinary(t, path, port)

	// Console.
	mustAdmin(t, port, "PAUSE")
	if v := pausedState(t, port); v != "yes" {
		t.Fatalf("paused after PAUSE: %s", v)
	}
	mustAdmin(t, port, "RESUME")
	if v := pausedState(t, port); v != "no" {
		t.Fatalf("paused after RESUME: %s", v)
	}

	// Signals, as PgBouncer: USR1 pauses, USR2 resumes.
	cmd.Process.Signal(syscall.SIGUSR1)
	eventuallyTrue(t, "SIGUSR1 to pause", func() bool { return pausedState(t, port) == "yes" })
	cmd.Process.Signal(syscall.SIGUSR2)
	eventuallyTrue(t, "SIGUSR2 to resume", func() bool { return pausedState(t, port) == "no" })

	// HTTP.
	if code, body := httpDo(t, "GET", web+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", web+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body := httpDo(t, "GET", web+"/metrics", "")
	// The binary's version, which is not the test's: go build stamps the
	// build information a test binary lacks.
	binVersion, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimPrefix(strings.TrimSpace(string(binVersion)), "pauseproxy ")
	for _, want := range []string{`pauseproxy_build_info{version="` + version + `"} 1`, "pauseproxy_paused_all 0", "go_goroutines", "process_open_fds"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics: %d, no %q in\n%s", code, want, body)
		}
	}
	if code, body := httpDo(t, "POST", web+"/pause", "tok"); code != 200 {
		t.Fatalf("/pause: %d %s", code, body)
	}
	if v := pausedState(t, port); v != "yes" {
		t.Fatalf("paused after /pause: %s", v)
	}
	if _, body := httpDo(t, "GET", web+"/metrics", ""); !strings.Contains(body, "pauseproxy_paused_all 1") {
		t.Fatalf("/metrics while paused:\n%s", body)
	}
	if code, body := httpDo(t, "POST", web+"/resume", "tok"); code != 200 {
		t.Fatalf("/resume: %d %s", code, body)
	}

	// SET lives until RELOAD re-reads the file.
	mustAdmin(t, port, "SET default_pool_size = 9")
	get := func() string {
		for _, row := range mustAdmin(t, port, "SHOW CONFIG") {
			if v, ok := strings.CutPrefix(row, "default_pool_size|"); ok {
				return strings.Split(v, "|")[0]
			}
		}
		return "?"
	}
	if v := get(); v != "9" {
		t.Fatalf("default_pool_size after SET: %s", v)
	}
	mustAdmin(t, port, "RELOAD")
	if v := get(); v != "4" {
		t.Fatalf("default_pool_size after RELOAD: %s", v)
	}
	events := strings.Join(mustAdmin(t, port, "SHOW EVENTS"), "\n")
	for _, want := range []string{"|pause|*|pause|", "|resume|*|pause|", "|command|*|SET default_pool_size|", "|command|*|RELOAD|"} {
		if !strings.Contains(events, want) {
			t.Errorf("SHOW EVENTS has no %q:\n%s", want, events)
		}
	}

	// SHUTDOWN ends the process, after answering.
	if _, err := adminExec(t, port, "SHUTDOWN"); err != nil {
		t.Fatalf("SHUTDOWN: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SHUTDOWN: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("pauseproxy did not exit after SHUTDOWN\n%s", logs.String())
	}
}
