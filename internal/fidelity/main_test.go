package fidelity

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// pg is the package's PostgreSQL cluster (SCRAM for TCP logins), with role
// app/apppass owning database appdb, which holds the fixtures below.
var pg *pgtest.Cluster

// fixtures are the tables scripts may use, so that every run sees the
// same rows and the same table OIDs (RowDescription carries them). Scripts
// read fid_items, write fid_sink only in a transaction that is rolled back
// or fails, and write fid_void freely: a trigger drops every row inserted.
const fixtures = `
CREATE TABLE fid_items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO fid_items SELECT g, 'item ' || g FROM generate_series(1, 5) g;
CREATE TABLE fid_sink (id int, name text);
CREATE TABLE fid_void (id int, name text);
CREATE FUNCTION fid_drop_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER fid_void_drop BEFORE INSERT ON fid_void FOR EACH ROW EXECUTE FUNCTION fid_drop_row();
`

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{AuthMethod: "scram-sha-256"}, func(c *pgtest.Cluster) {
		pg = c
		ctx := context.Background()
		for _, sql := range []string{
			`CREATE ROLE app LOGIN PASSWORD 'apppass'`,
			`CREATE DATABASE appdb OWNER app`,
		} {
			if err := c.Exec(ctx, sql); err != nil {
				fmt.Fprintln(os.Stderr, "setup:", err)
				os.Exit(1)
			}
		}
		conn, err := pgconn.Connect(ctx, c.DSN("app", "apppass", "appdb"))
		if err == nil {
			_, err = conn.Exec(ctx, fixtures).ReadAll()
			conn.Close(ctx)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "setup fixtures:", err)
			os.Exit(1)
		}
	}, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"))
}

// testProxy is an in-process pauseproxy in front of pg.
type testProxy struct {
	Addr   string // host:port
	Router *router.Router
	cancel context.CancelFunc
	done   chan struct{}
}

// poolSize leaves room for two script connections in a transaction, the
// rotator's blocker, and one spare.
const poolSize = 4

// startProxy writes a TOML configuration, loads it through config.Load
// (as the command does) and serves it until the test ends. It follows
// internal/proxy's test helper of the same name.
func startProxy(t testing.TB, poolMode string) *testProxy {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sockDir := filepath.Join(dir, "sock")
	if err := os.Mkdir(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(authFile, []byte(`"app" "apppass"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = %q
auth_type = "scram-sha-256"
auth_file = %q
pool_mode = %q
default_pool_size = %d

[databases.appdb]
host = "127.0.0.1"
port = %d
`, port, sockDir, authFile, poolMode, poolSize, pg.Port)
	path := filepath.Join(dir, "pauseproxy.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := router.New(cfg, log)
	srv, err := proxy.New(cfg, r, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp := &testProxy{Addr: fmt.Sprintf("127.0.0.1:%d", port), Router: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		srv.Serve(ctx)
		srv.Wait()
		close(tp.done)
	}()
	t.Cleanup(tp.Stop)
	return tp
}

// Stop closes every client and the pools.
func (p *testProxy) Stop() {
	p.cancel()
	<-p.done
	p.Router.Close()
}

// DSN is a pgx URL for app through the proxy.
func (p *testProxy) DSN() string {
	return fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=disable", p.Addr)
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { recover() }() // a log line after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
