package failover_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// staticDB is a [databases.db] table pointing at c with the superuser as
// the forced server login.
func staticDB(c *pgtest.Cluster) string {
	return fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\ndbname = \"postgres\"\nuser = %q\npassword = %q\n",
		c.Port, pgtest.Superuser, pgtest.SuperuserPassword)
}

func TestRestartInPlaceUnderLoad(t *testing.T) {
	p := startProxy(t, staticDB(pg), `hold_timeout = "20s"`)
	if out := pgbenchRun(t, p, "-i", "-q", "-s", "1"); !strings.Contains(out, "done") {
		t.Fatalf("pgbench -i: %s", out)
	}
	done := make(chan string, 1)
	go func() { done <- pgbenchRun(t, p, "-S", "-c", "8", "-j", "2", "-T", "8", "-n") }()
	time.Sleep(2 * time.Second)
	if err := pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := <-done
	requireClean(t, out)
	t.Logf("pgbench across a restart:\n%s", out)
}

func TestPrimaryThatNeverComesBackGives57P03(t *testing.T) {
	c := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
	p := startProxy(t, staticDB(c), `hold_timeout = "1500ms"`)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("want 57P03 after hold_timeout, got %v", err)
	}
	if d := time.Since(start); d < time.Second || d > 10*time.Second {
		t.Fatalf("held for %s, want about hold_timeout", d)
	}
	// The client stays connected and gets the same answer next time, not
	// a hang.
	if _, err := conn.Exec(ctx, "SELECT 1"); !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("second try: %v", err)
	}
}

func TestCutOverToAnotherCluster(t *testing.T) {
	a := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
	b := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
	ctx := context.Background()
	for _, c := range []*pgtest.Cluster{a, b} {
		if err := c.Exec(ctx, fmt.Sprintf("CREATE TABLE whoami AS SELECT %d AS port", c.Port)); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, staticDB(a), `hold_timeout = "20s"`)
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	port := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT port FROM whoami").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if port() != a.Port {
		t.Fatal("not on cluster a")
	}
	// The runbook of seeds/001: pause, re-point, resume.
	db, _ := p.Router.Database("db")
	db.Hold("pause")
	p.Reload(t, staticDB(b))
	db.Unhold("pause")
	proxytest.Eventually(t, 10*time.Second, "traffic on cluster b", func() bool { return port() == b.Port })
}

// TestPreparedStatementsAcrossRestart: named statements (pgbench -M
// prepared) keep working through a restart of the server in place: the new
// server connections get them prepared again as they are needed.
func TestPreparedStatementsAcrossRestart(t *testing.T) {
	p := startProxy(t, staticDB(pg), `hold_timeout = "20s"`)
	if out := pgbenchRun(t, p, "-i", "-q", "-s", "1"); !strings.Contains(out, "done") {
		t.Fatalf("pgbench -i: %s", out)
	}
	done := make(chan string, 1)
	go func() { done <- pgbenchRun(t, p, "-M", "prepared", "-S", "-c", "8", "-j", "2", "-T", "8", "-n") }()
	time.Sleep(2 * time.Second)
	if err := pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := <-done
	requireClean(t, out)
}
