package admin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// pg is the package's PostgreSQL cluster (md5 for TCP logins, which
// PgBouncer 1.18 handles with the clear-text passwords of its userlist).
// Roles: app/apppass, owner of database appdb.
var pg *pgtest.Cluster

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{AuthMethod: "md5"}, func(c *pgtest.Cluster) {
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

// Users of the test proxies and PgBouncers (auth_file).
const (
	adminUser, adminPass = "admin", "adminpass"
	statsUser, statsPass = "stats", "statspass"
	plainUser, plainPass = "plain", "plainpass"
)

const userlist = `"app" "apppass"
"admin" "adminpass"
"stats" "statspass"
"plain" "plainpass"
`

// testProxy is an in-process pauseproxy with its admin console.
type testProxy struct {
	*proxytest.Proxy
	control *testControl
}

// proxyOptions are the variable parts of a test configuration.
type proxyOptions struct {
	PoolSize int    // default 5
	Extra    string // more [proxy] lines
	DBPort   int    // default pg.Port
	AuthType string // default md5

	Topology   admin.Topology
	Switchover admin.Switchover
}

// startProxy serves a configuration built from o, with the console, until
// the test ends.
func startProxy(t testing.TB, o proxyOptions) *testProxy {
	t.Helper()
	if o.PoolSize == 0 {
		o.PoolSize = 5
	}
	if o.AuthType == "" {
		o.AuthType = "md5"
	}
	if o.DBPort == 0 {
		o.DBPort = pg.Port
	}
	toml := fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = "{{sock_dir}}"
auth_type = %q
auth_file = "{{dir}}/userlist.txt"
default_pool_size = %d
admin_users = ["admin"]
stats_users = ["stats"]
%s

[databases.appdb]
host = "127.0.0.1"
port = %d
`, o.AuthType, o.PoolSize, o.Extra, o.DBPort)
	tp := &testProxy{}
	tp.Proxy = proxytest.Start(t, toml, proxytest.WithSockDir(), proxytest.WithFile("userlist.txt", userlist),
		proxytest.WithAdmin(proxytest.AdminOptions{
			Control: func(p *proxytest.Proxy) admin.Control {
				tp.control = &testControl{path: p.Path, p: p}
				return tp.control
			},
			Topology: o.Topology, Switchover: o.Switchover,
			StatsPeriod: 500 * time.Millisecond,
		}))
	return tp
}

// testControl is the console's Control, as cmd/pauseproxy's App does it.
type testControl struct {
	mu        sync.Mutex
	path      string
	p         *proxytest.Proxy
	shutdowns []string
}

func (c *testControl) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, err := config.Load(c.path)
	if err != nil {
		return err
	}
	return c.p.Apply(cfg)
}

func (c *testControl) Set(key, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, err := config.WithSetting(c.p.Router.Config(), key, value)
	if err != nil {
		return err
	}
	return c.p.Apply(cfg)
}

func (c *testControl) Shutdown(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdowns = append(c.shutdowns, mode)
	return nil
}

// DSN is a pgx URL through the proxy.
func (p *testProxy) DSN(user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, password, p.Port, db)
}

// connect opens an application connection through the proxy.
func (p *testProxy) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), p.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatalf("connect through proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// console opens an admin console connection as user on port.
func console(t testing.TB, port int, user, password string) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(context.Background(), fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgbouncer sslmode=disable", port, user, password))
	if err != nil {
		t.Fatalf("console as %s on port %d: %v", user, port, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// result is one result set of a console command.
type result struct {
	Columns []string
	OIDs    []uint32
	Rows    [][]string // NULL as "<NULL>"
	Tag     string
}

// run sends sql as one simple Query and returns its result sets.
func run(t testing.TB, c *pgconn.PgConn, sql string) []result {
	t.Helper()
	res, err := execSQL(c, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res
}

func execSQL(c *pgconn.PgConn, sql string) ([]result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Not ReadAll: it reports no columns for a result without rows.
	mrr := c.Exec(ctx, sql)
	var out []result
	for mrr.NextResult() {
		rr := mrr.ResultReader()
		var x result
		for _, f := range rr.FieldDescriptions() {
			x.Columns = append(x.Columns, f.Name)
			x.OIDs = append(x.OIDs, f.DataTypeOID)
		}
		for rr.NextRow() {
			var vals []string
			for _, v := range rr.Values() {
				if v == nil {
					vals = append(vals, "<NULL>")
				} else {
					vals = append(vals, string(v))
				}
			}
			x.Rows = append(x.Rows, vals)
		}
		tag, err := rr.Close()
		if err != nil {
			mrr.Close()
			return out, err
		}
		x.Tag = tag.String()
		out = append(out, x)
	}
	return out, mrr.Close()
}

// one runs sql, which must give one result set.
func one(t testing.TB, c *pgconn.PgConn, sql string) result {
	t.Helper()
	res := run(t, c, sql)
	if len(res) != 1 {
		t.Fatalf("%s: %d result sets, want 1", sql, len(res))
	}
	return res[0]
}

// get returns the value of column col in the row whose first column is
// key, and whether there is one.
func (r result) get(key, col string) (string, bool) {
	i := -1
	for j, c := range r.Columns {
		if c == col {
			i = j
		}
	}
	for _, row := range r.Rows {
		if row[0] == key && i >= 0 {
			return row[i], true
		}
	}
	return "", false
}

// sqlState returns the SQLSTATE of a PostgreSQL error, or "".
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
