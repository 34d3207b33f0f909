package failover_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// terminate ends, directly on c, the backends running a query that
// contains marker, once one shows up.
func terminate(t *testing.T, c *pgtest.Cluster, marker string) {
	t.Helper()
	ctx := context.Background()
	dc, err := pgconn.Connect(ctx, c.DSN(pgtest.Superuser, pgtest.SuperuserPassword, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close(ctx)
	q := "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%" + marker + "%' AND pid <> pg_backend_pid()"
	proxytest.Eventually(t, 30*time.Second, "the victim's query to show up", func() bool {
		res := dc.Exec(ctx, q)
		rs, err := res.ReadAll()
		return err == nil && len(rs) == 1 && len(rs[0].Rows) == 1 && string(rs[0].Rows[0][0]) == "1"
	})
}

// settledClient connects through p and runs a statement, then drops the
// role-change events so far (the login's cycle, if any, is not what the
// tests look for). The connection closes when the test ends.
func settledClient(t *testing.T, p *testProxy) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx) })
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for len(p.events) > 0 {
		<-p.events
	}
	return c
}

func TestTerminateBackendEndsOnlyThatStatement(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, staticDB(pg), `hold_timeout = "20s"`+"\npool_mode = \""+mode+"\"")
			ctx := context.Background()
			victim := settledClient(t, p)
			marker := "victim_" + mode
			done := make(chan error, 1)
			var got string
			go func() {
				done <- victim.QueryRow(ctx, "SELECT '"+marker+"', pg_sleep(20)").Scan(&got, new(any))
			}()
			terminate(t, pg, marker)
			var err2 error
			select {
			case err2 = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("the terminated statement never ended")
			}
			// The operator meant to stop it: an error, never the result
			// of the statement run again elsewhere.
			if err2 == nil {
				t.Fatalf("the terminated statement returned %q: it ran again", got)
			}
			if !strings.Contains(err2.Error(), "terminating connection due to administrator command") {
				t.Fatalf("the client's error does not give the server's reason: %v", err2)
			}
			if mode == "transaction" {
				// The client stays; its next statement runs.
				var n int
				if err := victim.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
					t.Fatalf("next statement after the termination: %d %v", n, err)
				}
			} else {
				// Its session is gone, as on PostgreSQL: the connection
				// is closed.
				if _, err := victim.Exec(ctx, "SELECT 1"); err == nil {
					t.Fatal("session mode: the client's connection outlived its server's")
				}
			}
			// Another client goes on, and nothing held the database.
			other, err := pgx.Connect(ctx, p.DSN())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(ctx)
			if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			select {
			case ev := <-p.events:
				t.Fatalf("one terminated backend started a role-change cycle: %+v", ev)
			default:
			}
		})
	}
}

// TestSessionTimeoutFatalHoldsNoOne: a server connection that PostgreSQL
// ends by one of the session's own timeouts (idle_in_transaction_session_
// timeout while a client holds it, idle_session_timeout while it idles in
// the pool) is that connection's death only. The client in the
// transaction gets the server's reason; a client arriving as a pooled
// connection dies gets its statement run on another one; and no
// role-change cycle holds the database.
func TestSessionTimeoutFatalHoldsNoOne(t *testing.T) {
	ctx := context.Background()
	for _, sql := range []string{
		"DROP ROLE IF EXISTS idler",
		"CREATE ROLE idler LOGIN PASSWORD 'idlerpass'",
		"ALTER ROLE idler SET idle_in_transaction_session_timeout = '300ms'",
		"ALTER ROLE idler SET idle_session_timeout = '300ms'",
	} {
		if err := pg.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	db := fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ndbname = \"postgres\"\nuser = \"idler\"\npassword = \"idlerpass\"\n", pg.Port)
	p := startProxy(t, db, `hold_timeout = "20s"`)
	c := settledClient(t, p)

	// Held in a transaction past idle_in_transaction_session_timeout.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	_, err = tx.Exec(ctx, "SELECT 2")
	if err == nil || !strings.Contains(err.Error(), "idle-in-transaction timeout") {
		t.Fatalf("statement after the server's idle-in-transaction timeout: %v, want the server's reason", err)
	}
	tx.Rollback(ctx)

	// Pooled connections dying of idle_session_timeout, some as the
	// client arrives: every statement runs.
	for i := 0; i < 12; i++ {
		time.Sleep(time.Duration(250+10*i) * time.Millisecond)
		var n int
		if err := c.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
			t.Fatalf("statement %d after an idle pause: %d %v", i, n, err)
		}
	}
	time.Sleep(time.Second)
	select {
	case ev := <-p.events:
		t.Fatalf("a session's own timeout started a role-change cycle: %+v", ev)
	default:
	}
}
