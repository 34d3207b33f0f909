package pgtest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// shared is the package cluster started by TestMain (trust, no TLS).
var shared *pgtest.Cluster

// orphanEnv makes the test binary act as a child that starts a cluster and
// waits to be killed (TestParentDeathStopsServer).
const orphanEnv = "PGTEST_ORPHAN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(orphanEnv) != "" {
		orphanChild()
		return
	}
	pgtest.Main(m, pgtest.Options{}, func(c *pgtest.Cluster) { shared = c })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// query runs sql on a new connection and returns the first column of the
// first row.
func query(ctx context.Context, dsn, sql string) (string, error) {
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		return "", fmt.Errorf("%q returned no rows", sql)
	}
	return string(res[0].Rows[0][0]), nil
}

func wantSQLState(t *testing.T, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("err = %v, want a PostgreSQL error %s", err, code)
	}
	if pgErr.Code != code {
		t.Fatalf("SQLSTATE = %s (%v), want %s", pgErr.Code, pgErr, code)
	}
}

func TestSharedClusterDefaults(t *testing.T) {
	ctx := ctxT(t)
	if got, want := shared.Addr(), "127.0.0.1:"+strconv.Itoa(shared.Port); got != want {
		t.Errorf("Addr() = %q, want %q", got, want)
	}
	for setting, want := range map[string]string{
		"max_connections":    "300",
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"listen_addresses":   "127.0.0.1",
		"server_encoding":    "UTF8",
		"lc_collate":         "C",
	} {
		got, err := query(ctx, shared.DSN("postgres", "", "postgres"), "SHOW "+setting)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(shared.SocketDir, ".s.PGSQL."+strconv.Itoa(shared.Port))); err != nil {
		t.Errorf("unix socket: %v", err)
	}
	if shared.PID() == 0 {
		t.Error("PID() = 0 for a running cluster")
	}
}

func TestAuthMethods(t *testing.T) {
	tests := []struct {
		method     string
		wantHash   string // prefix of the stored password
		wantReject bool   // a wrong password fails
	}{
		{method: "trust", wantHash: "SCRAM-SHA-256$", wantReject: false},
		{method: "md5", wantHash: "md5", wantReject: true},
		{method: "scram-sha-256", wantHash: "SCRAM-SHA-256$", wantReject: true},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			ctx := ctxT(t)
			c := pgtest.Require(t, pgtest.Options{AuthMethod: tt.method})
			// A user and password that need URL escaping.
			const user, password = "app user@x", "p@ss:w/o'rd?"
			for _, sql := range []string{
				`CREATE ROLE "app user@x" LOGIN PASSWORD 'p@ss:w/o''rd?'`,
				`CREATE DATABASE "app db" OWNER "app user@x"`,
			} {
				if err := c.Exec(ctx, sql); err != nil {
					t.Fatal(err)
				}
			}
			got, err := query(ctx, c.DSN(user, password, "app db"), "SELECT current_user || '/' || current_database()")
			if err != nil {
				t.Fatalf("connect with the right password: %v", err)
			}
			if want := user + "/app db"; got != want {
				t.Errorf("connected as %q, want %q", got, want)
			}
			hash, err := query(ctx, c.DSN(pgtest.Superuser, pgtest.SuperuserPassword, "postgres"),
				`SELECT rolpassword FROM pg_authid WHERE rolname = 'app user@x'`)
			if err != nil {
				t.Fatalf("connect as superuser over TCP: %v", err)
			}
			if !strings.HasPrefix(hash, tt.wantHash) {
				t.Errorf("stored password %.16q..., want prefix %q", hash, tt.wantHash)
			}

			_, err = query(ctx, c.DSN(user, "wrong", "app db"), "SELECT 1")
			if !tt.wantReject {
				if err != nil {
					t.Fatalf("trust with a wrong password: %v", err)
				}
				return
			}
			wantSQLState(t, err, "28P01") // invalid_password
		})
	}
}

func TestSSL(t *testing.T) {
	ctx := ctxT(t)
	c := pgtest.Require(t, pgtest.Options{SSL: true, Conf: map[string]string{"max_connections": "42"}})
	base, err := url.Parse(c.DSN("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts url.Values
	}{
		{name: "require", opts: url.Values{"sslmode": {"require"}}},
		{name: "verify-full", opts: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {c.CAFile}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := *base
			u.RawQuery = tt.opts.Encode()
			conn, err := pgconn.Connect(ctx, u.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, ok := conn.Conn().(*tls.Conn); !ok {
				t.Errorf("connection is %T, want *tls.Conn", conn.Conn())
			}
			res, err := conn.Exec(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(res[0].Rows[0][0]); got != "t" {
				t.Errorf("pg_stat_ssl.ssl = %q, want t", got)
			}
		})
	}
	// Plain connections still work, and Conf applies.
	got, err := query(ctx, c.DSN("postgres", "", "postgres"), "SHOW max_connections")
	if err != nil {
		t.Fatal(err)
	}
	if got != "42" {
		t.Errorf("max_connections = %s, want 42 from Options.Conf", got)
	}
}

func TestRestartKeepsData(t *testing.T) {
	ctx := ctxT(t)
	if err := shared.Exec(ctx, "CREATE TABLE restart_t (v text); INSERT INTO restart_t VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	before := shared.PID()
	if err := shared.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if after := shared.PID(); after == 0 || after == before {
		t.Errorf("PID after Restart = %d, before %d: want a new running postmaster", after, before)
	}
	got, err := query(ctx, shared.DSN("postgres", "", "postgres"), "SELECT v FROM restart_t")
	if err != nil {
		t.Fatal(err)
	}
	if got != "kept" {
		t.Errorf("after Restart got %q, want kept", got)
	}
}

func TestKillThenRestart(t *testing.T) {
	ctx := ctxT(t)
	// Committed before the CHECKPOINT (its own Exec), so it survives the
	// crash despite synchronous_commit=off.
	for _, sql := range []string{"CREATE TABLE kill_t (v int); INSERT INTO kill_t VALUES (1)", "CHECKPOINT"} {
		if err := shared.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgconn.Connect(ctx, shared.DSN("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	if err := shared.Kill(); err != nil {
		t.Fatal(err)
	}
	if pid := shared.PID(); pid != 0 {
		t.Errorf("PID after Kill = %d, want 0", pid)
	}
	if _, err := conn.Exec(ctx, "SELECT 1").ReadAll(); err == nil {
		t.Error("query on a connection to a killed server succeeded")
	}
	if err := shared.Kill(); err == nil {
		t.Error("Kill of a killed cluster succeeded, want an error")
	}

	if err := shared.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := query(ctx, shared.DSN("postgres", "", "postgres"), "SELECT sum(v) FROM kill_t")
	if err != nil {
		t.Fatal(err)
	}
	if got != "1" {
		t.Errorf("after crash recovery got %q, want 1", got)
	}
}

func TestStopTwice(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid := c.PID()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("data dir after Stop: %v, want it removed", err)
	}
	if c.PID() != 0 {
		t.Errorf("PID after Stop = %d, want 0", c.PID())
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("postmaster %d still exists after Stop", pid)
	}
	if err := c.Restart(context.Background()); err == nil {
		t.Error("Restart after Stop succeeded, want an error")
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts pgtest.Options
		want string
	}{
		{name: "auth method", opts: pgtest.Options{AuthMethod: "password"}, want: "AuthMethod"},
		{name: "managed setting", opts: pgtest.Options{Conf: map[string]string{"port": "1"}}, want: "managed"},
		{name: "bad value", opts: pgtest.Options{Conf: map[string]string{"work_mem": "64MB\nfsync = on"}}, want: "newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pgtest.Start(tt.opts)
			if err == nil {
				c.Stop()
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	_, err := pgtest.Start(pgtest.Options{Conf: map[string]string{"shared_buffers": "not a size"}})
	if err == nil {
		t.Fatal("Start succeeded with an invalid setting")
	}
	if !strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("err = %v, want the server log naming shared_buffers", err)
	}
}

// TestParentDeathStopsServer kills a test process that has a cluster running
// and checks that the postmaster goes away with it.
func TestParentDeathStopsServer(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not report its cluster: %v", err)
	}
	var pid int
	var root string
	if _, err := fmt.Sscanf(line, "%d %s", &pid, &root); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	t.Cleanup(func() { os.RemoveAll(root) }) // the dead child cannot
	cmd.Process.Kill()
	cmd.Wait()

	deadline := time.Now().Add(30 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d still running 30s after its parent died", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func orphanChild() {
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d %s\n", c.PID(), filepath.Dir(c.Dir))
	select {} // until killed
}

// processAlive reports whether pid exists and is not a zombie (the orphaned
// postmaster is reaped by init, which may be slow or absent in containers).
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || len(b) < i+3 || (b[i+2] != 'Z' && b[i+2] != 'X')
}
