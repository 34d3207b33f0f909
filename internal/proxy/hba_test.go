package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// auth_type = hba end to end: the first line matching the connection type,
// address, database and user decides the method (the one the proxy asks
// for is checked on the wire), reject and no match refuse with
// PostgreSQL's 28000 messages, and clients of every method log in and run
// queries, over TCP, the Unix socket and TLS with a client certificate.
func TestAuthHBA(t *testing.T) {
	ca, err := pgtest.NewCA("pauseproxy hba test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	certPEM, keyPEM, _ := ca.Issue("localhost")
	serverCert, serverKey := write("proxy.crt", certPEM), write("proxy.key", keyPEM)
	caFile := write("ca.crt", ca.PEM)
	certPEM, keyPEM, _ = ca.Issue("app")
	appCert, appKey := write("app.crt", certPEM), write("app.key", keyPEM)
	certPEM, keyPEM, _ = ca.Issue("postgres")
	pgCert, pgKey := write("postgres.crt", certPEM), write("postgres.key", keyPEM)

	const hba = `# TYPE    DATABASE  USER      ADDRESS                   METHOD
local     all       app                                 password
hostssl   appdb     app       127.0.0.1/32              cert
host      all       evil      127.0.0.1 255.255.255.255 reject
host      appdb     app       127.0.0.0/8               scram-sha-256
host      appdb     postgres  127.0.0.1/32              trust
host      nosuchdb  app       127.0.0.1/32              md5
host      pgbouncer admin     127.0.0.1/32              md5
`
	p := startProxy(t, proxyOptions{
		AuthType: "hba",
		Extra: fmt.Sprintf("auth_hba_file = \"{{dir}}/hba.conf\"\nclient_tls_sslmode = \"allow\"\nclient_tls_cert_file = %q\nclient_tls_key_file = %q\nclient_tls_ca_file = %q\n",
			serverCert, serverKey, caFile),
		Opts: []proxytest.Option{proxytest.WithFile("hba.conf", hba)},
	})
	sock := filepath.Join(p.SockDir, fmt.Sprintf(".s.PGSQL.%d", p.Port))

	t.Run("method asked for", func(t *testing.T) {
		for _, tt := range []struct {
			name, network, addr, user, db string
			want                          uint32 // AuthenticationRequest code; 0 is AuthenticationOk
		}{
			{"local line", "unix", sock, "app", "appdb", 3},           // cleartext
			{"host line", "tcp", p.Addr, "app", "appdb", 10},          // SASL
			{"trust line", "tcp", p.Addr, "postgres", "appdb", 0},     // ok at once
			{"unknown database", "tcp", p.Addr, "app", "nosuchdb", 5}, // MD5, then 3D000
			{"admin console", "tcp", p.Addr, "admin", "pgbouncer", 5}, // MD5
		} {
			c, err := net.Dial(tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: tt.user}, {Name: "database", Value: tt.db}}))
			m, err := wire.NewReader(c, 0).ReadMessage()
			c.Close()
			if err != nil || m.Type() != wire.MsgAuthentication {
				t.Errorf("%s: got %q, %v; want an authentication request", tt.name, m, err)
				continue
			}
			if got := binary.BigEndian.Uint32(m.Body()); got != tt.want {
				t.Errorf("%s: authentication request %d, want %d", tt.name, got, tt.want)
			}
		}
	})

	ctx := context.Background()
	t.Run("logins", func(t *testing.T) {
		for _, tt := range []struct{ name, dsn string }{
			{"scram over TCP", p.DSN("app", "apppass", "appdb")},
			{"password over the Unix socket", fmt.Sprintf("host=%s port=%d user=app password=apppass dbname=appdb", p.SockDir, p.Port)},
			{"trust", p.DSN("postgres", "", "appdb")},
			{"cert", fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=appdb sslmode=require sslcert=%s sslkey=%s", p.Port, appCert, appKey)},
		} {
			c, err := pgx.Connect(ctx, tt.dsn)
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				continue
			}
			var n int
			if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
				t.Errorf("%s: SELECT: %d, %v", tt.name, n, err)
			}
			c.Close(ctx)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct{ name, dsn, code, msg string }{
			{"reject line", p.DSN("evil", "x", "appdb"), "28000",
				`pg_hba.conf rejects connection for host "127.0.0.1", user "evil", database "appdb", no encryption`},
			{"no line", p.DSN("ghost", "x", "appdb"), "28000",
				`no pg_hba.conf entry for host "127.0.0.1", user "ghost", database "appdb", no encryption`},
			{"no line over TLS", fmt.Sprintf("postgres://ghost:x@%s/appdb?sslmode=require", p.Addr), "28000",
				`no pg_hba.conf entry for host "127.0.0.1", user "ghost", database "appdb", SSL encryption`},
			{"no line on the socket", fmt.Sprintf("host=%s port=%d user=evil password=x dbname=appdb", p.SockDir, p.Port), "28000",
				`no pg_hba.conf entry for host "[local]", user "evil", database "appdb", no encryption`},
			{"wrong password", p.DSN("app", "nope", "appdb"), "28P01", `password authentication failed for user "app"`},
			{"unknown database after md5", p.DSN("app", "apppass", "nosuchdb"), "3D000", "pauseproxy: no such database: nosuchdb"},
			{"cert without a certificate", fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=require", p.Addr), "28000",
				"connection requires a valid client certificate"},
			{"cert of another user", fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=appdb sslmode=require sslcert=%s sslkey=%s", p.Port, pgCert, pgKey), "28000",
				`certificate authentication failed for user "app"`},
		} {
			_, err := pgconn.Connect(ctx, tt.dsn)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tt.code || pe.Message != tt.msg {
				t.Errorf("%s: want %s %q, got %v", tt.name, tt.code, tt.msg, err)
			}
		}
	})
}
