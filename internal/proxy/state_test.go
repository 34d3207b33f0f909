package proxy_test

// The proxy's record of each server connection's state (prepared
// statements, session parameters) against what real drivers send: every
// statement that changes that state, whatever protocol carries it, must
// leave the record true, so no client ever sees another's effects.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pgconnTo opens a pgconn through p, closed when the test ends.
func pgconnTo(t *testing.T, p *testProxy, params string) *pgconn.PgConn {
	t.Helper()
	dsn := p.DSN("app", "apppass", "appdb") + params
	c, err := pgconn.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect through proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func execPrepared(ctx context.Context, c *pgconn.PgConn, name string, args ...string) (string, error) {
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	res := c.ExecPrepared(ctx, name, bargs, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) == 0 {
		return "", nil
	}
	return string(res.Rows[0][0]), nil
}

// extended runs sql alone with the extended protocol (Parse, Bind,
// Describe, Execute, Sync of the unnamed statement), as psycopg 3 and
// pgjdbc send DEALLOCATE ALL and DISCARD ALL.
func extended(ctx context.Context, c *pgconn.PgConn, sql string) error {
	return c.ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestWipeOverExtendedProtocolKeepsOtherClientsStatements(t *testing.T) {
	for _, wipe := range []string{"DEALLOCATE ALL", "DISCARD ALL", "deallocate prepare all", "  Discard All ;"} {
		t.Run(wipe, func(t *testing.T) {
			// One server connection: every client shares it.
			p := startProxy(t, proxyOptions{PoolSize: 1})
			ctx := context.Background()
			a := pgconnTo(t, p, "")
			b := pgconnTo(t, p, "")
			if _, err := a.Prepare(ctx, "s1", "SELECT $1::int * 10", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Prepare(ctx, "b1", "SELECT $1::int * 10", nil); err != nil {
				t.Fatal(err)
			}
			if v, err := execPrepared(ctx, a, "s1", "4"); err != nil || v != "40" {
				t.Fatalf("a s1 before: %q %v", v, err)
			}
			if err := extended(ctx, b, wipe); err != nil {
				t.Fatalf("%s over the extended protocol: %v", wipe, err)
			}
			// b's own statement is gone, as on PostgreSQL.
			if _, err := execPrepared(ctx, b, "b1", "1"); sqlstate(err) != "26000" {
				t.Fatalf("b's b1 after its %s: want 26000, got %v", wipe, err)
			}
			// a's statement, shared on the same server connection, is not.
			for i := 0; i < 3; i++ {
				if v, err := execPrepared(ctx, a, "s1", "5"); err != nil || v != "50" {
					t.Fatalf("a s1 after b's %s: %q %v", wipe, v, err)
				}
			}
			// A new client preparing the same statement works too.
			c := pgconnTo(t, p, "")
			if _, err := c.Prepare(ctx, "s1", "SELECT $1::int * 10", nil); err != nil {
				t.Fatal(err)
			}
			if v, err := execPrepared(ctx, c, "s1", "6"); err != nil || v != "60" {
				t.Fatalf("new client s1: %q %v", v, err)
			}
			// b prepares again after its wipe.
			if _, err := b.Prepare(ctx, "b1", "SELECT $1::int * 10", nil); err != nil {
				t.Fatalf("b prepares b1 again: %v", err)
			}
			if v, err := execPrepared(ctx, b, "b1", "7"); err != nil || v != "70" {
				t.Fatalf("b b1 again: %q %v", v, err)
			}
		})
	}
}

func TestWipeThatFailsKeepsStatements(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	a := pgconnTo(t, p, "")
	if _, err := a.Prepare(ctx, "s1", "SELECT $1::int + 1", nil); err != nil {
		t.Fatal(err)
	}
	// Inside a failed transaction the DEALLOCATE ALL is refused (25P02):
	// nothing was dropped.
	res := a.Exec(ctx, "BEGIN; SELECT 1/0")
	res.ReadAll()
	if err := extended(ctx, a, "DEALLOCATE ALL"); sqlstate(err) != "25P02" {
		t.Fatalf("DEALLOCATE ALL in a failed transaction: want 25P02, got %v", err)
	}
	if _, err := a.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if v, err := execPrepared(ctx, a, "s1", "1"); err != nil || v != "2" {
		t.Fatalf("s1 after a refused DEALLOCATE ALL: %q %v", v, err)
	}
	b := pgconnTo(t, p, "")
	if _, err := b.Prepare(ctx, "x", "SELECT $1::int + 1", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := execPrepared(ctx, b, "x", "2"); err != nil || v != "3" {
		t.Fatalf("another client after a refused DEALLOCATE ALL: %q %v", v, err)
	}
}

func TestDeallocateNameOverExtendedProtocol(t *testing.T) {
	// psycopg 3 evicts its statements with DEALLOCATE _pg3_N sent as an
	// extended-protocol query.
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	a := pgconnTo(t, p, "")
	other := pgconnTo(t, p, "")
	if _, err := a.Prepare(ctx, "_pg3_0", "SELECT $1::int - 1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Prepare(ctx, "o", "SELECT $1::int - 1", nil); err != nil {
		t.Fatal(err)
	}
	if err := extended(ctx, a, "DEALLOCATE _pg3_0"); err != nil {
		t.Fatalf("DEALLOCATE _pg3_0: %v", err)
	}
	if _, err := execPrepared(ctx, a, "_pg3_0", "1"); sqlstate(err) != "26000" {
		t.Fatalf("_pg3_0 after DEALLOCATE: want 26000, got %v", err)
	}
	if err := extended(ctx, a, `DEALLOCATE PREPARE "_pg3_0"`); sqlstate(err) != "26000" {
		t.Fatalf("second DEALLOCATE: want 26000, got %v", err)
	}
	// The name can be used again, and the other client's statement of the
	// same query still works.
	if _, err := a.Prepare(ctx, "_pg3_0", "SELECT $1::int * 3", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := execPrepared(ctx, a, "_pg3_0", "3"); err != nil || v != "9" {
		t.Fatalf("_pg3_0 prepared again: %q %v", v, err)
	}
	if v, err := execPrepared(ctx, other, "o", "3"); err != nil || v != "2" {
		t.Fatalf("other's statement: %q %v", v, err)
	}
}

func TestSchemaChangeUnderSharedStatements(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	admin := pgconnTo(t, p, "")
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS sc1, sc2; CREATE TABLE sc1 (a int); INSERT INTO sc1 VALUES (1); CREATE TABLE sc2 (a int); INSERT INTO sc2 VALUES (1)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		table  string
		direct bool // the ALTER runs directly on PostgreSQL, unseen by the proxy
	}{
		{name: "altered through the proxy", table: "sc1"},
		{name: "altered behind the proxy's back", table: "sc2", direct: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			query := "SELECT * FROM " + tc.table
			a := pgconnTo(t, p, "")
			if _, err := a.Prepare(ctx, "s", query, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := execPrepared(ctx, a, "s"); err != nil {
				t.Fatal(err)
			}
			alter := "ALTER TABLE " + tc.table + " ADD COLUMN b int DEFAULT 2"
			if tc.direct {
				dc, err := pgconn.Connect(ctx, pg.DSN("app", "apppass", "appdb"))
				if err != nil {
					t.Fatal(err)
				}
				_, err = dc.Exec(ctx, alter).ReadAll()
				dc.Close(ctx)
				if err != nil {
					t.Fatal(err)
				}
			} else if _, err := admin.Exec(ctx, alter).ReadAll(); err != nil {
				t.Fatal(err)
			}
			// a prepared before the change: PostgreSQL answers 0A000
			// "cached plan must not change result type" to every Bind of
			// it until a prepares it again; so does the proxy, whichever
			// server connection a lands on.
			for i := 0; i < 3; i++ {
				if _, err := execPrepared(ctx, a, "s"); sqlstate(err) != "0A000" {
					t.Fatalf("a's statement after the ALTER (%d): want 0A000, got %v", i, err)
				}
			}
			// Brand-new clients prepare after the change: they never see
			// the error, whatever the others' statements on the server.
			for i := 0; i < 3; i++ {
				c := pgconnTo(t, p, "")
				sd, err := c.Prepare(ctx, "fresh", query, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(sd.Fields) != 2 {
					t.Fatalf("new client: %d columns described, want 2", len(sd.Fields))
				}
				res := c.ExecPrepared(ctx, "fresh", nil, nil, nil).Read()
				if res.Err != nil {
					t.Fatalf("new client %d after the ALTER: %v", i, res.Err)
				}
				if len(res.FieldDescriptions) != 2 {
					t.Fatalf("new client: %d columns, want 2", len(res.FieldDescriptions))
				}
			}
			// The driver's recovery (Close, Parse again) works.
			if err := a.Deallocate(ctx, "s"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Prepare(ctx, "s", query, nil); err != nil {
				t.Fatal(err)
			}
			res := a.ExecPrepared(ctx, "s", nil, nil, nil).Read()
			if res.Err != nil || len(res.FieldDescriptions) != 2 {
				t.Fatalf("a after re-preparing: %v (%d columns)", res.Err, len(res.FieldDescriptions))
			}
		})
	}
}

func TestStartupParametersSurviveReset(t *testing.T) {
	// asyncpg's pool sends RESET ALL on every release; psycopg and pgjdbc
	// may send DISCARD ALL. On PostgreSQL both go back to the values of
	// the startup packet, not to the server's defaults.
	for _, mode := range []string{"transaction", "session"} {
		for _, reset := range []string{"RESET ALL", "DISCARD ALL", "RESET search_path", "SET search_path TO DEFAULT"} {
			for _, proto := range []string{"simple", "extended"} {
				t.Run(mode+"/"+reset+"/"+proto, func(t *testing.T) {
					p := startProxy(t, proxyOptions{PoolSize: 1, PoolMode: mode})
					ctx := context.Background()
					c := pgconnTo(t, p, "&search_path=tenant_a&statement_timeout=1234&application_name=app1")
					show := func(name string) string {
						res := c.ExecParams(ctx, "SELECT current_setting($1)", [][]byte{[]byte(name)}, nil, nil, nil).Read()
						if res.Err != nil {
							t.Fatalf("show %s: %v", name, res.Err)
						}
						return string(res.Rows[0][0])
					}
					if _, err := c.Exec(ctx, "SET search_path TO other; SET statement_timeout = 999; SET application_name = 'changed'").ReadAll(); err != nil {
						t.Fatal(err)
					}
					if proto == "simple" {
						if _, err := c.Exec(ctx, reset).ReadAll(); err != nil {
							t.Fatal(err)
						}
					} else if err := extended(ctx, c, reset); err != nil {
						t.Fatal(err)
					}
					if got := show("search_path"); got != "tenant_a" {
						t.Fatalf("search_path after %s: %q, want tenant_a (the startup value)", reset, got)
					}
					if strings.HasPrefix(reset, "RESET search_path") || strings.HasPrefix(reset, "SET search_path") {
						return
					}
					if got := show("statement_timeout"); got != "1234ms" {
						t.Fatalf("statement_timeout after %s: %q, want 1234ms", reset, got)
					}
					if got := show("application_name"); got != "app1" {
						t.Fatalf("application_name after %s: %q, want app1", reset, got)
					}
					if got := c.ParameterStatus("application_name"); got != "app1" {
						t.Fatalf("reported application_name after %s: %q, want app1", reset, got)
					}
				})
			}
		}
	}
}

func TestClientSetDoesNotLeakToOthers(t *testing.T) {
	// A client's session SET of a parameter the proxy carries for another
	// client must not reach that other client through the shared server
	// connection.
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	a := pgconnTo(t, p, "&search_path=tenant_a")
	b := pgconnTo(t, p, "&search_path=tenant_b")
	show := func(c *pgconn.PgConn) string {
		res := c.ExecParams(ctx, "SELECT current_setting('search_path')", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return string(res.Rows[0][0])
	}
	if got := show(a); got != "tenant_a" {
		t.Fatalf("a: %q", got)
	}
	if _, err := a.Exec(ctx, "SET search_path = tenant_b").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if got := show(b); got != "tenant_b" {
		t.Fatalf("b: %q", got)
	}
	// A third client with a's startup value: the proxy's record of the
	// server connection (tenant_a, set for a) is stale after a's SET.
	d := pgconnTo(t, p, "&search_path=tenant_a")
	if _, err := a.Exec(ctx, "SET search_path = tenant_b").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if got := show(d); got != "tenant_a" {
		t.Fatalf("d got %q after a's SET, want its own tenant_a", got)
	}
	if _, err := b.Exec(ctx, "SET search_path = evil").ReadAll(); err != nil {
		t.Fatal(err)
	}
	c := pgconnTo(t, p, "")
	if got := show(c); got != `"$user", public` {
		t.Fatalf("a client with no search_path got %q", got)
	}
	if got := show(a); got == "evil" {
		t.Fatalf("a got b's search_path")
	}
}

func TestRepeatedParseAnswersAsPostgres(t *testing.T) {
	// A second Parse of a named statement is 42P05, whether the query is
	// the same or not, inside a transaction or not (PostgreSQL's answer).
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startProxy(t, proxyOptions{PoolSize: 1, PoolMode: mode})
			ctx := context.Background()
			c := pgconnTo(t, p, "")
			if _, err := c.Prepare(ctx, "s1", "SELECT 1", nil); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"SELECT 1", "SELECT 2"} {
				if _, err := c.Prepare(ctx, "s1", q, nil); sqlstate(err) != "42P05" {
					t.Fatalf("repeated Parse %q outside a transaction: want 42P05, got %v", q, err)
				}
				if _, err := c.Exec(ctx, "BEGIN").ReadAll(); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Prepare(ctx, "s1", q, nil); sqlstate(err) != "42P05" {
					t.Fatalf("repeated Parse %q in a transaction: want 42P05, got %v", q, err)
				}
				if _, err := c.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
					t.Fatal(err)
				}
			}
			if v, err := execPrepared(ctx, c, "s1"); err != nil || v != "1" {
				t.Fatalf("s1 after the refused Parses: %q %v", v, err)
			}
		})
	}
}

func TestPgxWithResetsAndSmallPool(t *testing.T) {
	// pgx's statement cache against statements other clients wipe with
	// DISCARD ALL and DEALLOCATE ALL, concurrently on a pool of 2.
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		go func(g int) {
			c, err := pgx.Connect(ctx, p.DSN("app", "apppass", "appdb"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for i := 0; i < 40; i++ {
				var n int
				if err := c.QueryRow(ctx, "SELECT $1::int + 100", i).Scan(&n); err != nil || n != i+100 {
					errs <- err
					return
				}
				if g%3 == 0 && i%7 == 0 {
					wipe := []string{"DEALLOCATE ALL", "DISCARD ALL"}[i%2]
					if _, err := c.Exec(ctx, wipe, pgx.QueryExecModeExec); err != nil {
						errs <- err
						return
					}
					// pgx's own cache still names what the server lost:
					// it must forget it too, as after any DEALLOCATE ALL.
					c.DeallocateAll(ctx)
				}
			}
			errs <- nil
		}(g)
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCancelWhileWaitingForAServer(t *testing.T) {
	// A statement queued in the proxy (here: a full pool) and cancelled by
	// its client leaves the queue with 57014 and never runs, as
	// asyncpg's timeout and psycopg's cancel() expect.
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	holder := pgconnTo(t, p, "")
	if _, err := holder.Exec(ctx, "DROP TABLE IF EXISTS cw; CREATE TABLE cw (a int)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "BEGIN; SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	waiter := pgconnTo(t, p, "")
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, "INSERT INTO cw VALUES (1)").ReadAll()
		done <- err
	}()
	// The insert is queued behind holder's transaction; cancel it until
	// it ends (the first cancel may come before it is queued).
	var err error
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-deadline:
			t.Fatal("the cancelled statement never ended")
		case <-time.After(200 * time.Millisecond):
			if cerr := waiter.CancelRequest(ctx); cerr != nil {
				t.Fatal(cerr)
			}
		}
	}
	if sqlstate(err) != "57014" {
		t.Fatalf("want 57014 for the cancelled wait, got %v", err)
	}
	if _, err := holder.Exec(ctx, "COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// The client goes on, and what it gave up on never ran.
	res := waiter.ExecParams(ctx, "SELECT count(*) FROM cw", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := string(res.Rows[0][0]); n != "0" {
		t.Fatalf("the cancelled INSERT ran after all: %s rows", n)
	}
}

func TestSessionSetFollowsClientAcrossServers(t *testing.T) {
	// A SET outside a transaction is the client's for the rest of its
	// session, whichever server connection runs its next transactions;
	// SET LOCAL and a rolled-back SET are not; nobody else sees it.
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx := context.Background()
	a := pgconnTo(t, p, "&search_path=tenant_a")
	b := pgconnTo(t, p, "")
	show := func(c *pgconn.PgConn, name string) string {
		t.Helper()
		res := c.ExecParams(ctx, "SELECT current_setting($1)", [][]byte{[]byte(name)}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("show %s: %v", name, res.Err)
		}
		return string(res.Rows[0][0])
	}
	for _, sql := range []string{
		"SET statement_timeout = '1s'",
		"SET search_path TO tenant_x, public",
		"SET work_mem TO '8MB'; SET LOCAL lock_timeout = '5s'",
		"BEGIN; SET enable_seqscan = off; ROLLBACK",
		"BEGIN; SET enable_hashjoin = off; COMMIT",
	} {
		if _, err := a.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	for i := 0; i < 4; i++ {
		// b takes the server connection a last used, so a's next
		// transaction runs on the other one.
		if _, err := b.Exec(ctx, "BEGIN; SELECT 1").ReadAll(); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{
			"statement_timeout": "1s", "search_path": "tenant_x, public", "work_mem": "8MB",
			"lock_timeout": "0", "enable_seqscan": "on", "enable_hashjoin": "off",
		} {
			if got := show(a, name); got != want {
				t.Fatalf("round %d: a's %s = %q, want %q", i, name, got, want)
			}
		}
		if _, err := b.Exec(ctx, "COMMIT").ReadAll(); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"statement_timeout": "0", "work_mem": "4MB", "enable_hashjoin": "on", "search_path": `"$user", public`} {
			if got := show(b, name); got != want {
				t.Fatalf("round %d: b sees %s = %q, want %q", i, name, got, want)
			}
		}
	}
	// The statement_timeout a set is in force for it.
	if _, err := a.Exec(ctx, "SELECT pg_sleep(3)").ReadAll(); sqlstate(err) != "57014" {
		t.Fatalf("a's statement_timeout: want 57014, got %v", err)
	}
	// RESET takes it back to the startup value; RESET ALL all of them.
	if _, err := a.Exec(ctx, "RESET search_path").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if got := show(a, "search_path"); got != "tenant_a" {
		t.Fatalf("after RESET search_path: %q", got)
	}
	if _, err := a.Exec(ctx, "RESET ALL").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if got := show(a, "statement_timeout"); got != "0" {
		t.Fatalf("after RESET ALL: statement_timeout %q", got)
	}
}

func TestSessionModeIsTransparent(t *testing.T) {
	// In session mode the client holds its server's real BackendKeyData:
	// pg_backend_pid(), cancels and pg_terminate_backend() agree with it.
	p := startProxy(t, proxyOptions{PoolMode: "session", PoolSize: 3})
	ctx := context.Background()
	c := pgconnTo(t, p, "")
	res := c.ExecParams(ctx, "SELECT pg_backend_pid()", nil, nil, nil, nil).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := string(res.Rows[0][0]); got != fmt.Sprint(c.PID()) {
		t.Fatalf("pg_backend_pid() = %s, BackendKeyData PID = %d", got, c.PID())
	}
	// A cancel with that key, through the proxy.
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(20)").ReadAll()
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	var err error
	deadline := time.After(30 * time.Second)
	for err == nil {
		if cerr := c.CancelRequest(ctx); cerr != nil {
			t.Fatal(cerr)
		}
		select {
		case err = <-done:
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatal("cancel never reached the server")
		}
	}
	if sqlstate(err) != "57014" {
		t.Fatalf("want 57014, got %v", err)
	}
	// pg_terminate_backend() of that PID from elsewhere ends the client's
	// connection with PostgreSQL's FATAL.
	other := pgconnTo(t, p, "")
	if err := other.ExecParams(ctx, "SELECT pg_terminate_backend($1::int)", [][]byte{[]byte(fmt.Sprint(c.PID()))}, nil, nil, nil).Read().Err; err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = c.Exec(qctx, "SELECT 1").ReadAll()
	if err == nil || qctx.Err() != nil {
		t.Fatalf("after pg_terminate_backend: %v", err)
	}
	if code := sqlstate(err); code != "57P01" && !c.IsClosed() {
		t.Fatalf("want FATAL 57P01 and a closed connection, got %v", err)
	}
}

// TestSchemaChangeUnderPortalDescribe is pgjdbc's way: it Parses a named
// statement, Binds it and Describes the portal, never the statement, and
// from then on Binds with one result format per column it learned. After
// a schema change, on a server connection that never had the statement,
// that Bind must get PostgreSQL's 0A000, which pgjdbc recovers from, not
// the 08P01 "bind message has 2 result formats but query has 3 columns"
// of a statement prepared afresh with the new shape.
func TestSchemaChangeUnderPortalDescribe(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	admin := pgconnTo(t, p, "")
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS scp; CREATE TABLE scp (a int, c text); INSERT INTO scp VALUES (1, 'x')").ReadAll(); err != nil {
		t.Fatal(err)
	}
	a := pgconnTo(t, p, "")
	fe := a.Frontend()
	fe.Send(&pgproto3.Parse{Name: "S_1", Query: "SELECT * FROM scp"})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("Parse: %s", e.Message)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	// pgconn's ExecPrepared is Bind, Describe portal, Execute, Sync.
	res := a.ExecPrepared(ctx, "S_1", nil, nil, []int16{1, 0}).Read()
	if res.Err != nil || len(res.FieldDescriptions) != 2 {
		t.Fatalf("before the change: %v (%d columns)", res.Err, len(res.FieldDescriptions))
	}

	dc, err := pgconn.Connect(ctx, pg.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = dc.Exec(ctx, "ALTER TABLE scp ADD COLUMN b int DEFAULT 2").ReadAll()
	dc.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh server connection, which lacks the statement (admin
	// RECONNECT).
	db, _ := p.Router.Database("appdb")
	db.Reconnect()
	for i := 0; i < 2; i++ {
		err := a.ExecPrepared(ctx, "S_1", nil, nil, []int16{1, 0}).Read().Err
		if sqlstate(err) != "0A000" {
			t.Fatalf("Bind after the change (%d): want 0A000, got %v", i, err)
		}
	}
}
