package failover_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxy"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// pg is the package's PostgreSQL cluster.
var pg *pgtest.Cluster

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{AuthMethod: "md5"}, func(c *pgtest.Cluster) {
		pg = c
	}, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"))
}

// testProxy is an in-process pauseproxy with its role-change engines.
type testProxy struct {
	Port    int
	Router  *router.Router
	Manager *failover.Manager
	Server  *proxy.Server
	path    string
	cancel  context.CancelFunc
	done    chan struct{}
	events  chan failover.Event
}

// startProxy serves database "db" described by dbTOML (the lines of its
// [databases.db] table) with a forced server login, trust auth for
// clients, and the given extra [proxy] lines.
func startProxy(t *testing.T, dbTOML, extra string) *testProxy {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	body := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 4
max_client_conn = 500
%s

[databases.db]
%s
`, port, extra, dbTOML)
	path := filepath.Join(dir, "pauseproxy.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, body)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := router.New(cfg, log)
	tp := &testProxy{Port: port, Router: r, path: path, done: make(chan struct{}), events: make(chan failover.Event, 100)}
	tp.Manager = failover.NewManager(r, log, func(ev failover.Event) {
		select {
		case tp.events <- ev:
		default:
		}
	})
	tp.Manager.Sync(cfg)
	srv, err := proxy.New(cfg, r, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	tp.Server = srv
	ctx, cancel := context.WithCancel(context.Background())
	tp.cancel = cancel
	go func() {
		srv.Serve(ctx)
		srv.Wait()
		close(tp.done)
	}()
	t.Cleanup(tp.Stop)
	return tp
}

// Stop closes everything. Safe to call twice.
func (p *testProxy) Stop() {
	p.cancel()
	<-p.done
	p.Manager.Close()
	p.Router.Close()
}

// Reload re-reads the config after the database table changed.
func (p *testProxy) Reload(t *testing.T, dbTOML, extra string) {
	t.Helper()
	b, _ := os.ReadFile(p.path)
	s := string(b)
	i := strings.Index(s, "[databases.db]")
	s = s[:i] + "[databases.db]\n" + dbTOML + "\n"
	os.WriteFile(p.path, []byte(s), 0o600)
	cfg, err := config.Load(p.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Server.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	p.Router.Reload(cfg)
	p.Manager.Sync(cfg)
}

// DSN is a URL for user through the proxy.
func (p *testProxy) DSN() string {
	return fmt.Sprintf("postgres://app@127.0.0.1:%d/db?sslmode=disable", p.Port)
}

// pgbench runs pgbench through the proxy and returns its output, failing
// the test if pgbench itself cannot run.
func pgbenchRun(t *testing.T, p *testProxy, args ...string) string {
	t.Helper()
	cmd := exec.Command("pgbench", append(args, fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=db sslmode=disable", p.Port))...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

var (
	failedRE    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	processedRE = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)

// requireClean fails unless pgbench finished with no failed transaction and
// no aborted client.
func requireClean(t *testing.T, out string) {
	t.Helper()
	m := failedRE.FindStringSubmatch(out)
	if m == nil || m[1] != "0" || strings.Contains(out, "aborted") || strings.Contains(out, "Run was aborted") {
		t.Fatalf("want 0 failed transactions and no aborted client:\n%s", out)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

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
