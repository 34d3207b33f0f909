package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/ops"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

var (
	pg  *pgtest.Cluster
	bin string // the pauseproxy binary built for these tests
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pauseproxy-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "pauseproxy")
	// Lock files of this test binary only: internal/ops's tests, run at
	// the same time by go test, take locks of the same names.
	os.Setenv(ops.LockDirEnv, dir)
	if out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build pauseproxy: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m, pgtest.Options{AuthMethod: "md5"}, func(c *pgtest.Cluster) {
		pg = c
		if err := c.Exec(context.Background(), `CREATE ROLE app LOGIN PASSWORD 'apppass'; CREATE TABLE IF NOT EXISTS t (v int); GRANT ALL ON t TO app`); err != nil {
			fmt.Fprintln(os.Stderr, "setup:", err)
			os.Exit(1)
		}
	})
}

// writeConfig writes a config for the binary and returns its path and the
// proxy's port.
func writeConfig(t *testing.T, dir string, poolSize int) (string, int) {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(`"app" "apppass"`+"\n"), 0o600)
	path := filepath.Join(dir, "pauseproxy.toml")
	writePool(t, path, port, poolSize)
	return path, port
}

func writePool(t *testing.T, path string, port, poolSize int) {
	t.Helper()
	body := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "md5"
auth_file = "userlist.txt"
default_pool_size = %d
shutdown_timeout = "20s"

[databases.postgres]
host = "127.0.0.1"
port = %d
`, port, poolSize, pg.Port)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startBinary runs pauseproxy --config path and waits until it accepts.
func startBinary(t *testing.T, path string, port int) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return startBinaryArgs(t, port, "--allow-root", "--config", path)
}

// startBinaryArgs runs pauseproxy with args and waits until it accepts on
// port.
func startBinaryArgs(t *testing.T, port int, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pauseproxy log:\n%s", logs.String())
		}
	})
	dsn := dsn(port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			c.Close(context.Background())
			return cmd, &logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("pauseproxy did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dsn(port int) string {
	return fmt.Sprintf("postgres://app:apppass@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "pauseproxy ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}

func TestCheckConfigReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	os.WriteFile(path, []byte(`[proxy]
listen_port = 70000
pool_mode = "statement-ish"
bogus_key = 1

[databases.app]
port = 0
`), 0o600)
	var out, errb bytes.Buffer
	code := run([]string{"check-config", path}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{"proxy.listen_port", "proxy.pool_mode", "proxy.bogus_key", "databases.app.port", "bad.toml"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check-config output does not name %s:\n%s", want, errb.String())
		}
	}
	good, _ := writeConfig(t, dir, 2)
	out.Reset()
	errb.Reset()
	if code := run([]string{"check-config", good}, &out, &errb); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}
}

func TestSighupChangesPoolSize(t *testing.T) {
	dir := t.TempDir()
	path, port := writeConfig(t, dir, 1)
	// The file as the argument, as PgBouncer's unit gives its ini.
	cmd, _ := startBinaryArgs(t, port, path, "--allow-root")
	ctx := context.Background()
	a, err := pgx.Connect(ctx, dsn(port))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := pgx.Connect(ctx, dsn(port))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if _, err := a.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	// b waits: the only server connection is inside a's transaction.
	got := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT 1")
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("b ran with pool_size 1 while a held the server: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	writePool(t, path, port, 2)
	cmd.Process.Signal(syscall.SIGHUP)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b still waiting after SIGHUP raised pool_size to 2")
	}
	a.Exec(ctx, "COMMIT")

	// A broken config is refused and the old one keeps serving.
	os.WriteFile(path, []byte("[proxy]\nlisten_port = \"x\"\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if _, err := b.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
}

func TestSigtermLetsTransactionCommit(t *testing.T) {
	dir := t.TempDir()
	path, port := writeConfig(t, dir, 2)
	cmd, logs := startBinary(t, path, port)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	idle, err := pgx.Connect(ctx, dsn(port))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (4242)"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	// New connections are refused, the transaction in flight commits.
	if c2, err := pgx.Connect(ctx, dsn(port)); err == nil {
		c2.Close(ctx)
		t.Fatal("new connection accepted after SIGTERM")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit after SIGTERM: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pauseproxy did not exit after the transaction ended")
	}
	direct, err := pgx.Connect(ctx, pg.DSN("postgres", "postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	var n int
	direct.QueryRow(ctx, "SELECT count(*) FROM t WHERE v = 4242").Scan(&n)
	if n != 1 {
		t.Fatalf("committed row missing: %d", n)
	}
}

func TestRunFromPgBouncerINI(t *testing.T) {
	dir := t.TempDir()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(`"app" "apppass"`+"\n"), 0o600)
	ini := filepath.Join(dir, "pgbouncer.ini")
	os.WriteFile(ini, []byte(fmt.Sprintf(`; a PgBouncer user's file, unchanged
[databases]
postgres = host=127.0.0.1 port=%d dbname=postgres pool_size=3

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
auth_type = md5
auth_file = userlist.txt
pool_mode = transaction
logfile = /var/log/pgbouncer/pgbouncer.log
pidfile = /var/run/pgbouncer/pgbouncer.pid
admin_users = app
`, pg.Port, port)), 0o600)

	// As PgBouncer's systemd unit runs it: the file as the argument.
	// The tests run as root: allowed with the flag after the file.
	cmd := exec.Command(bin, ini, "--allow-root")
	var logs proxytest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ctx := context.Background()
	var c *pgx.Conn
	eventually := time.Now().Add(20 * time.Second)
	for {
		c, err = pgx.Connect(ctx, dsn(port))
		if err == nil {
			break
		}
		if time.Now().After(eventually) {
			t.Fatalf("pauseproxy from pgbouncer.ini did not start: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close(ctx)
	var v int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&v); err != nil || v != 42 {
		t.Fatalf("query: %v %d", err, v)
	}
	// Unsupported settings warn, naming the setting, and do not fail.
	for _, want := range []string{"pgbouncer.logfile", "pgbouncer.pidfile"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning naming %s:\n%s", want, logs.String())
		}
	}
	// convert prints TOML that check-config accepts.
	var out, errb bytes.Buffer
	if code := run([]string{"convert", ini}, &out, &errb); code != 0 {
		t.Fatalf("convert: %d %s", code, errb.String())
	}
	toml := filepath.Join(dir, "converted.toml")
	os.WriteFile(toml, out.Bytes(), 0o600)
	out.Reset()
	if code := run([]string{"check-config", toml}, &out, &errb); code != 0 {
		t.Fatalf("check-config of the converted file: %d %s\n%s", code, errb.String(), toml)
	}
}
