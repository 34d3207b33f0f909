package failover_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestFullServerClientsWaitForPoolConnections: PostgreSQL refuses most of
// the pool's logins with 53300 (max_connections 6, 3 of them reserved for
// superusers, the pool logs in as an ordinary role and wants 8). The 16
// pgbench clients wait for the connections the pool has, as with
// PgBouncer; none is aborted.
func TestFullServerClientsWaitForPoolConnections(t *testing.T) {
	c := pgtest.Require(t, pgtest.Options{AuthMethod: "md5", Conf: map[string]string{
		"max_connections": "6", "superuser_reserved_connections": "3",
	}})
	ctx := context.Background()
	for _, q := range []string{
		"CREATE ROLE bench LOGIN PASSWORD 'benchpw'",
		"CREATE DATABASE bench OWNER bench",
	} {
		if err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, fmt.Sprintf(`host = "127.0.0.1"
port = %d
dbname = "bench"
user = "bench"
password = "benchpw"
pool_size = 8`, c.Port), "server_login_retry = \"200ms\"\nhold_timeout = \"60s\"\nquery_wait_timeout = \"120s\"")
	if out := pgbenchRun(t, p, "-i", "-q", "-s", "1"); !strings.Contains(out, "done") {
		t.Fatalf("pgbench -i: %s", out)
	}
	out := pgbenchRun(t, p, "-c", "16", "-j", "2", "-t", "50", "-n")
	requireClean(t, out)
	if m := proxytest.PgbenchProcessed.FindStringSubmatch(out); m == nil || m[1] != "800" {
		t.Fatalf("want 800 transactions processed:\n%s", out)
	}
	// The server really refused some of the pool's logins.
	logBytes, err := os.ReadFile(c.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logBytes), "remaining connection slots are reserved") {
		t.Fatalf("the server never refused a login: the test did not test anything")
	}
}

// TestRefusedLoginFailsClientsPromptly: a refusal that waiting cannot heal
// reaches the waiting client within about a second (not after
// hold_timeout), as 08001 carrying the server's own reason.
func TestRefusedLoginFailsClientsPromptly(t *testing.T) {
	tlsPG := pgtest.Require(t, pgtest.Options{AuthMethod: "md5", SSL: true})
	otherCA, err := pgtest.NewCA("not the server's CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCAFile, otherCA.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		db    string // the [databases.db] table
		proxy string // extra [proxy] lines
		want  string // in the client's error message
		fixed string // a [databases.db] table that works, "" to skip
	}{
		{
			name: "wrong server password",
			db: fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ndbname = \"postgres\"\nuser = %q\npassword = \"wrong\"\n",
				pg.Port, pgtest.Superuser),
			want:  "28P01",
			fixed: staticDB(pg),
		},
		{
			name: "missing server database",
			db: fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ndbname = \"nosuchdb\"\nuser = %q\npassword = %q\n",
				pg.Port, pgtest.Superuser, pgtest.SuperuserPassword),
			want: "3D000",
		},
		{
			name: "server certificate from another CA",
			db: fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ndbname = \"postgres\"\nuser = %q\npassword = %q\n",
				tlsPG.Port, pgtest.Superuser, pgtest.SuperuserPassword),
			proxy: fmt.Sprintf("server_tls_sslmode = \"verify-full\"\nserver_tls_ca_file = %q", otherCAFile),
			want:  "x509",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, tt.db, "hold_timeout = \"60s\"\n"+tt.proxy)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
			defer cancel()
			// Two tries: the first may come before the engine's first
			// check, the second after it; both must fail promptly.
			for try := range 2 {
				start := time.Now()
				conn, err := pgx.Connect(ctx, p.DSN())
				if err == nil {
					conn.Close(ctx)
					t.Fatalf("try %d: connected through a refused server login", try)
				}
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "08001" || !strings.Contains(pe.Message, tt.want) {
					t.Fatalf("try %d: want 08001 carrying %q, got %v", try, tt.want, err)
				}
				// hold_timeout is 60s: an answer in well under that came
				// from the refusal, not from the hold running out.
				if d := time.Since(start); d > 20*time.Second {
					t.Fatalf("try %d: answered after %s", try, d)
				}
			}
			if tt.fixed == "" {
				return
			}
			// Fixed by a reload: the refusal does not outlive its login.
			p.Reload(t, tt.fixed)
			proxytest.Eventually(t, 20*time.Second, "a login through the fixed server login", func() bool {
				conn, err := pgx.Connect(ctx, p.DSN())
				if err != nil {
					return false
				}
				defer conn.Close(ctx)
				_, err = conn.Exec(ctx, "SELECT 1")
				return err == nil
			})
		})
	}
}
