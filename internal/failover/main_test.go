package failover_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
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
	*proxytest.Proxy
	extra  string
	events chan failover.Event
}

// proxyTOML is the configuration of database "db" described by dbTOML (the
// lines of its [databases.db] table) with a forced server login, trust auth
// for clients, and the given extra [proxy] lines.
func proxyTOML(dbTOML, extra string) string {
	return fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 4
max_client_conn = 500
%s

[databases.db]
%s
`, extra, dbTOML)
}

// startProxy serves proxyTOML(dbTOML, extra) with a failover.Manager until
// the test ends.
func startProxy(t *testing.T, dbTOML, extra string) *testProxy {
	t.Helper()
	tp := &testProxy{extra: extra, events: make(chan failover.Event, 100)}
	tp.Proxy = proxytest.Start(t, proxyTOML(dbTOML, extra), proxytest.WithFailover(func(ev failover.Event) {
		select {
		case tp.events <- ev:
		default:
		}
	}))
	return tp
}

// Reload re-reads the config after the database table changed to dbTOML;
// the [proxy] table stays as startProxy wrote it.
func (p *testProxy) Reload(t *testing.T, dbTOML string) {
	t.Helper()
	p.Proxy.Reload(t, proxyTOML(dbTOML, p.extra))
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

// requireClean fails unless pgbench finished with no failed transaction and
// no aborted client.
func requireClean(t *testing.T, out string) {
	t.Helper()
	m := proxytest.PgbenchFailed.FindStringSubmatch(out)
	if m == nil || m[1] != "0" || strings.Contains(out, "aborted") || strings.Contains(out, "Run was aborted") {
		t.Fatalf("want 0 failed transactions and no aborted client:\n%s", out)
	}
}
