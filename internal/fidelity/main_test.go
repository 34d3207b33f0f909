package fidelity

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
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
type testProxy struct{ *proxytest.Proxy }

// poolSize leaves room for two script connections in a transaction, the
// rotator's blocker, and one spare.
const poolSize = 4

// startProxy serves pg in poolMode until the test ends, configured like
// internal/proxy's test proxy.
func startProxy(t testing.TB, poolMode string) *testProxy {
	t.Helper()
	toml := fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = "{{sock_dir}}"
auth_type = "scram-sha-256"
auth_file = "{{dir}}/userlist.txt"
pool_mode = %q
default_pool_size = %d

[databases.appdb]
host = "127.0.0.1"
port = %d
`, poolMode, poolSize, pg.Port)
	return &testProxy{proxytest.Start(t, toml, proxytest.WithSockDir(), proxytest.WithFile("userlist.txt", `"app" "apppass"`+"\n"))}
}

// DSN is a pgx URL for app through the proxy.
func (p *testProxy) DSN() string {
	return fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=disable", p.Addr)
}
