package proxy_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
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
type testProxy struct{ *proxytest.Proxy }

// proxyOptions are the variable parts of a test configuration.
type proxyOptions struct {
	PoolMode string // default transaction
	PoolSize int    // default 5
	Extra    string // more [proxy] lines
	DBExtra  string // more [databases.appdb] lines
	AuthType string // default scram-sha-256
	// ServerPort points the database at another cluster than pg.
	ServerPort int
	// Opts are more proxytest options (a logger, files).
	Opts []proxytest.Option
}

// startProxy serves a configuration built from o until the test ends.
func startProxy(t testing.TB, o proxyOptions) *testProxy {
	t.Helper()
	opts := append([]proxytest.Option{proxytest.WithSockDir(),
		proxytest.WithFile("userlist.txt", `"app" "apppass"`+"\n"+`"postgres" "postgres"`+"\n"+`"admin" "adminpass"`+"\n")}, o.Opts...)
	return &testProxy{proxytest.Start(t, proxyTOML(o), opts...)}
}

// proxyTOML is the configuration startProxy serves for o (for a Reload).
func proxyTOML(o proxyOptions) string {
	if o.PoolMode == "" {
		o.PoolMode = "transaction"
	}
	if o.PoolSize == 0 {
		o.PoolSize = 5
	}
	if o.AuthType == "" {
		o.AuthType = "scram-sha-256"
	}
	serverPort := pg.Port
	if o.ServerPort != 0 {
		serverPort = o.ServerPort
	}
	return fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = "{{sock_dir}}"
auth_type = %q
auth_file = "{{dir}}/userlist.txt"
pool_mode = %q
default_pool_size = %d
max_client_conn = 2000
admin_users = ["admin"]
%s

[databases.appdb]
host = "127.0.0.1"
port = %d
%s
`, o.AuthType, o.PoolMode, o.PoolSize, o.Extra, serverPort, o.DBExtra)
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
