package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// pg is the package's PostgreSQL cluster (SCRAM for TCP logins). Roles:
// app/apppass (owner of database appdb).
var pg *pgtest.Cluster

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{AuthMethod: "scram-sha-256", Conf: map[string]string{"max_connections": "300"}}, func(c *pgtest.Cluster) {
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
	}, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"))
}

// testProxy is an in-process pauseproxy in front of pg.
type testProxy struct {
	Addr    string // host:port
	Port    int
	SockDir string
	Cfg     *config.Config
	Router  *router.Router
	Server  *proxy.Server
	path    string
	cancel  context.CancelFunc
	done    chan struct{}
}

// proxyOptions are the variable parts of a test configuration.
type proxyOptions struct {
	PoolMode string // default transaction
	PoolSize int    // default 5
	Extra    string // more [proxy] lines
	DBExtra  string // more [databases.appdb] lines
	AuthType string // default scram-sha-256
	// ServerPort points the database at another cluster than pg.
	ServerPort int
}

// startProxy writes a TOML configuration, loads it through config.Load
// (as the command does) and serves it until the test ends.
func startProxy(t testing.TB, o proxyOptions) *testProxy {
	t.Helper()
	if o.PoolMode == "" {
		o.PoolMode = "transaction"
	}
	if o.PoolSize == 0 {
		o.PoolSize = 5
	}
	if o.AuthType == "" {
		o.AuthType = "scram-sha-256"
	}
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	serverPort := pg.Port
	if o.ServerPort != 0 {
		serverPort = o.ServerPort
	}
	dir := t.TempDir()
	sockDir := filepath.Join(dir, "sock")
	os.Mkdir(sockDir, 0o755)
	authFile := filepath.Join(dir, "userlist.txt")
	os.WriteFile(authFile, []byte(`"app" "apppass"`+"\n"+`"postgres" "postgres"`+"\n"+`"admin" "adminpass"`+"\n"), 0o600)
	toml := fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = %q
auth_type = %q
auth_file = %q
pool_mode = %q
default_pool_size = %d
max_client_conn = 2000
admin_users = ["admin"]
%s

[databases.appdb]
host = "127.0.0.1"
port = %d
%s
`, port, sockDir, o.AuthType, authFile, o.PoolMode, o.PoolSize, o.Extra, serverPort, o.DBExtra)
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
	tp := &testProxy{
		Addr: fmt.Sprintf("127.0.0.1:%d", port), Port: port, SockDir: sockDir,
		Cfg: cfg, Router: r, Server: srv, path: path, cancel: cancel, done: make(chan struct{}),
	}
	go func() {
		srv.Serve(ctx)
		srv.Wait()
		close(tp.done)
	}()
	t.Cleanup(tp.Stop)
	return tp
}

// Stop closes every client and the pools. Safe to call twice.
func (p *testProxy) Stop() {
	p.cancel()
	<-p.done
	p.Router.Close()
}

// DSN is a libpq/pgx URL for user through the proxy.
func (p *testProxy) DSN(user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, p.Addr, db)
}

// KV is the same as a libpq keyword/value string (for psql and pgbench).
func (p *testProxy) KV(user, db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", p.Port, user, db)
}

func (p *testProxy) connect(t testing.TB, ctx context.Context) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, p.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatalf("connect through proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { recover() }() // a log line after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = io.EOF
var _ = net.Dial
