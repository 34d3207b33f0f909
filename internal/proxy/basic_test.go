package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPsqlThroughProxy(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	for _, host := range []string{"127.0.0.1", p.SockDir} {
		cmd := exec.Command("psql", fmt.Sprintf("host=%s port=%d user=app dbname=appdb", host, p.Port),
			"-X", "-v", "ON_ERROR_STOP=1", "-tA",
			"-c", "SELECT 40 + 2", "-c", "BEGIN; CREATE TEMP TABLE t (x int) ON COMMIT DROP; INSERT INTO t VALUES (1),(2); SELECT sum(x) FROM t; COMMIT")
		cmd.Env = append(os.Environ(), "PGPASSWORD=apppass")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql via %s: %v\n%s", host, err, out)
		}
		if got := strings.Fields(string(out)); len(got) < 2 || got[0] != "42" || got[len(got)-2] != "3" {
			t.Fatalf("psql via %s: unexpected output %q", host, out)
		}
	}
}

func TestPgxExecModes(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx := context.Background()
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeSimpleProtocol,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeDescribeExec,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			cfg, err := pgx.ParseConfig(p.DSN("app", "apppass", "appdb"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := pgx.ConnectConfig(ctx, cfg)
					if err != nil {
						errs <- err
						return
					}
					defer c.Close(ctx)
					for i := 0; i < 50; i++ {
						var n int
						var s string
						if err := c.QueryRow(ctx, "SELECT $1::int * 2, $2::text", i+g, "x").Scan(&n, &s); err != nil {
							errs <- err
							return
						}
						if n != (i+g)*2 || s != "x" {
							errs <- fmt.Errorf("wrong result %d %q", n, s)
							return
						}
						rows, _ := c.Query(ctx, "SELECT generate_series(1, $1::int)", 5)
						vals, err := pgx.CollectRows(rows, pgx.RowTo[int32])
						if err != nil || len(vals) != 5 {
							errs <- fmt.Errorf("series: %v %v", vals, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

func TestErrorsInsideTransactionAndPipeline(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	c := p.connect(t, ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT 1/0")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22012" {
		t.Fatalf("want division_by_zero, got %v", err)
	}
	_, err = tx.Exec(ctx, "SELECT 1")
	if !errors.As(err, &pe) || pe.Code != "25P02" {
		t.Fatalf("want in_failed_sql_transaction, got %v", err)
	}
	tx.Rollback(ctx)

	// A pipelined batch with an error in the middle: the server skips to
	// the Sync; the proxy must release only after it.
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 3")
	br := c.SendBatch(ctx, b)
	var one int
	if err := br.QueryRow().Scan(&one); err != nil || one != 1 {
		t.Fatalf("first: %v %d", err, one)
	}
	if _, err := br.Exec(); !errors.As(err, &pe) || pe.Code != "22012" {
		t.Fatalf("second: %v", err)
	}
	br.Close()
	// The connection is usable afterwards, on the single server.
	var v int
	if err := c.QueryRow(ctx, "SELECT 7").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after batch: %v %d", err, v)
	}
}

func TestWrongPasswordAndUnknownDatabase(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	cases := []struct {
		name, dsn, code string
	}{
		{"wrong password", p.DSN("app", "nope", "appdb"), "28P01"},
		{"unknown user", p.DSN("ghost", "nope", "appdb"), "28P01"},
		{"unknown database", p.DSN("app", "apppass", "nosuchdb"), "3D000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pgconn.Connect(ctx, tc.dsn)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("want SQLSTATE %s, got %v", tc.code, err)
			}
		})
	}
}

func TestCancelReachesServer(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, p.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	// Cancelling an idle client reaches nothing and does no harm.
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	var start time.Time
	time.AfterFunc(300*time.Millisecond, func() {
		start = time.Now()
		c.CancelRequest(ctx)
	})
	_, err = c.Exec(ctx, "SELECT pg_sleep(30)").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("want query_canceled 57014, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cancel took %s", d)
	}
}

func TestSessionParametersFollowClient(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	cfgA, _ := pgx.ParseConfig(p.DSN("app", "apppass", "appdb"))
	cfgA.RuntimeParams["TimeZone"] = "Asia/Tokyo"
	cfgA.RuntimeParams["search_path"] = "a_schema, public"
	cfgA.RuntimeParams["application_name"] = "client-a"
	a, err := pgx.ConnectConfig(ctx, cfgA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b := p.connect(t, ctx)
	if _, err := b.Exec(ctx, "SET DateStyle = 'SQL, DMY'"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var tz, sp, app, ds string
		if err := a.QueryRow(ctx, "SELECT current_setting('TimeZone'), current_setting('search_path'), current_setting('application_name'), current_setting('DateStyle')").Scan(&tz, &sp, &app, &ds); err != nil {
			t.Fatal(err)
		}
		if tz != "Asia/Tokyo" || sp != "a_schema, public" || app != "client-a" || ds != "ISO, MDY" {
			t.Fatalf("client a sees %q %q %q %q", tz, sp, app, ds)
		}
		if err := b.QueryRow(ctx, "SELECT current_setting('TimeZone'), current_setting('search_path'), current_setting('DateStyle')").Scan(&tz, &sp, &ds); err != nil {
			t.Fatal(err)
		}
		if tz == "Asia/Tokyo" || sp != `"$user", public` || ds != "SQL, DMY" {
			t.Fatalf("client b sees %q %q %q", tz, sp, ds)
		}
		if got := b.PgConn().ParameterStatus("DateStyle"); got != "SQL, DMY" {
			t.Fatalf("client b ParameterStatus DateStyle = %q", got)
		}
	}
	// Any parameter a session may SET is carried, as PostgreSQL takes it
	// at startup (client_min_messages, enable_seqscan, a custom one).
	cfgC, _ := pgx.ParseConfig(p.DSN("app", "apppass", "appdb"))
	cfgC.RuntimeParams["enable_seqscan"] = "off"
	cfgC.RuntimeParams["client_min_messages"] = "warning"
	cfgC.RuntimeParams["myapp.tenant"] = "t42"
	cc, err := pgx.ConnectConfig(ctx, cfgC)
	if err != nil {
		t.Fatalf("startup with settable parameters: %v", err)
	}
	var seq, cmm, tenant string
	if err := cc.QueryRow(ctx, "SELECT current_setting('enable_seqscan'), current_setting('client_min_messages'), current_setting('myapp.tenant')").Scan(&seq, &cmm, &tenant); err != nil {
		t.Fatal(err)
	}
	cc.Close(ctx)
	if seq != "off" || cmm != "warning" || tenant != "t42" {
		t.Fatalf("carried startup parameters: %q %q %q", seq, cmm, tenant)
	}
	// One PostgreSQL does not know is refused, naming it, unless ignored.
	cfgD, _ := pgx.ParseConfig(p.DSN("app", "apppass", "appdb"))
	cfgD.RuntimeParams["no_such_parameter"] = "1"
	_, err = pgx.ConnectConfig(ctx, cfgD)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42704" || !strings.Contains(pe.Message, "no_such_parameter") {
		t.Fatalf("want refusal naming no_such_parameter, got %v", err)
	}
}

func TestAuthQuery(t *testing.T) {
	ctx := context.Background()
	if err := pg.Exec(ctx, `CREATE ROLE aq LOGIN PASSWORD 'aqpass'`); err != nil {
		t.Fatal(err)
	}
	// aq is in no auth_file: its secret comes from pg_shadow through
	// auth_user; the server login is the database's forced user.
	p := startProxy(t, proxyOptions{
		AuthType: "md5",
		Extra:    `auth_user = "postgres"`,
		DBExtra:  "user = \"postgres\"\npassword = \"postgres\"\n",
	})
	c, err := pgx.Connect(ctx, p.DSN("aq", "aqpass", "appdb"))
	if err != nil {
		t.Fatalf("login through auth_query: %v", err)
	}
	defer c.Close(ctx)
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	_, err = pgconn.Connect(ctx, p.DSN("aq", "wrong", "appdb"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password through auth_query: want 28P01, got %v", err)
	}
	// An unknown database has no auth_query to run: the exchange is a
	// mock one, failed like a wrong password even with the right one, as
	// PgBouncer fails it with a fake user.
	_, err = pgconn.Connect(ctx, p.DSN("aq", "aqpass", "nosuchdb"))
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("auth_query user, unknown database: want 28P01, got %v", err)
	}
}

func TestQueryTimeoutCancels(t *testing.T) {
	p := startProxy(t, proxyOptions{Extra: `query_timeout = "500ms"`})
	ctx := context.Background()
	c := p.connect(t, ctx)
	start := time.Now()
	_, err := c.Exec(ctx, "SELECT pg_sleep(10)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" {
		t.Fatalf("want 57014 from query_timeout, got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("query_timeout took %s", d)
	}
	// The client stays usable, and short queries are not affected.
	for i := 0; i < 3; i++ {
		var v int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuthDBName(t *testing.T) {
	// auth_dbname: auth_query runs in another database entry (here the
	// only one holding the lookup function), as PgBouncer 1.20+.
	ctx := context.Background()
	for _, sql := range []string{
		`DROP ROLE IF EXISTS adb`,
		`CREATE ROLE adb LOGIN PASSWORD 'adbpass'`,
		`CREATE OR REPLACE FUNCTION public.lookup_secret(u text) RETURNS TABLE (usename name, passwd text) LANGUAGE sql SECURITY DEFINER AS $$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = u $$`,
	} {
		if err := pg.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, proxyOptions{
		AuthType: "md5",
		Extra:    "auth_user = \"postgres\"\nauth_query = \"SELECT * FROM public.lookup_secret($1)\"\nauth_dbname = \"authdb\"",
		DBExtra:  fmt.Sprintf("user = \"postgres\"\npassword = \"postgres\"\n\n[databases.authdb]\nhost = \"127.0.0.1\"\nport = %d\ndbname = \"postgres\"\n", pg.Port),
	})
	c, err := pgx.Connect(ctx, p.DSN("adb", "adbpass", "appdb"))
	if err != nil {
		t.Fatalf("login through auth_query in auth_dbname: %v", err)
	}
	c.Close(ctx)
	var pe *pgconn.PgError
	if _, err := pgconn.Connect(ctx, p.DSN("adb", "wrong", "appdb")); !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Fatalf("wrong password: want 28P01, got %v", err)
	}
	// With an auth database, the right password for a database that does
	// not exist is told so after authentication.
	if _, err := pgconn.Connect(ctx, p.DSN("adb", "adbpass", "nosuchdb")); !errors.As(err, &pe) || pe.Code != "3D000" {
		t.Fatalf("unknown database with auth_dbname: want 3D000, got %v", err)
	}
}
