package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

func TestPgbenchPreparedTransactionMode(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 4})
	pgbench(t, p, "-i", "-q", "-s", "1")
	for _, args := range [][]string{
		{"-M", "prepared", "-S", "-c", "20", "-j", "2", "-T", "3", "-n"},
		{"-M", "prepared", "-c", "16", "-j", "2", "-T", "3", "-n"},
		{"-M", "extended", "-S", "-c", "20", "-j", "2", "-T", "2", "-n"},
	} {
		out := pgbench(t, p, args...)
		m := proxytest.PgbenchFailed.FindStringSubmatch(out)
		if m == nil || m[1] != "0" {
			t.Fatalf("pgbench %v: want 0 failed transactions:\n%s", args, out)
		}
		pm := proxytest.PgbenchProcessed.FindStringSubmatch(out)
		if n, _ := strconv.Atoi(pm[1]); n < 100 {
			t.Fatalf("pgbench %v: too few transactions:\n%s", args, out)
		}
	}
}

func TestPgxAllExecModesSmallPool(t *testing.T) {
	// max_prepared_statements 8 with more distinct statements than that
	// forces evictions on the server connections too.
	p := startProxy(t, proxyOptions{PoolSize: 2, Extra: "max_prepared_statements = 8"})
	ctx := context.Background()
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 10; g++ {
		mode := modes[g%len(modes)]
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			cfg, err := pgx.ParseConfig(p.DSN("app", "apppass", "appdb"))
			if err != nil {
				errs <- err
				return
			}
			cfg.DefaultQueryExecMode = mode
			cfg.StatementCacheCapacity = 4 // pgx evicts (DEALLOCATE/Close) too
			cfg.DescriptionCacheCapacity = 4
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			for i := 0; i < 60; i++ {
				k := i % 12 // 12 distinct statements
				sql := fmt.Sprintf("SELECT $1::int + %d, $2::text || '-%d'", k, k)
				var n int
				var s string
				if err := c.QueryRow(ctx, sql, i, "g"+strconv.Itoa(g)).Scan(&n, &s); err != nil {
					errs <- fmt.Errorf("%s goroutine %d query %d: %w", mode, g, i, err)
					return
				}
				if n != i+k || s != fmt.Sprintf("g%d-%d", g, k) {
					errs <- fmt.Errorf("%s: wrong result %d %q", mode, n, s)
					return
				}
				if i%10 == 0 {
					tx, err := c.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					var x int
					if err := tx.QueryRow(ctx, "SELECT $1::int", i).Scan(&x); err != nil || x != i {
						errs <- fmt.Errorf("%s in tx: %v", mode, err)
						return
					}
					tx.Commit(ctx)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestNamedStatementsProtocolEdges(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, p.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	other, err := pgconn.Connect(ctx, p.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)

	if _, err := c.Prepare(ctx, "s1", "SELECT $1::int * 10", nil); err != nil {
		t.Fatal(err)
	}
	// Another client prepares a different query under the same name.
	if _, err := other.Prepare(ctx, "s1", "SELECT $1::text || '!'", nil); err != nil {
		t.Fatal(err)
	}
	exec := func(c *pgconn.PgConn, name, arg string) (string, error) {
		res := c.ExecPrepared(ctx, name, [][]byte{[]byte(arg)}, nil, nil).Read()
		if res.Err != nil {
			return "", res.Err
		}
		return string(res.Rows[0][0]), nil
	}
	for i := 0; i < 3; i++ {
		if v, err := exec(c, "s1", "4"); err != nil || v != "40" {
			t.Fatalf("c s1: %q %v", v, err)
		}
		if v, err := exec(other, "s1", "hi"); err != nil || v != "hi!" {
			t.Fatalf("other s1: %q %v", v, err)
		}
	}
	// Re-use of a name with a different query after Close.
	if err := c.Deallocate(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := exec(c, "s1", "4"); err == nil {
		t.Fatal("s1 still usable after DEALLOCATE")
	}
	if _, err := c.Prepare(ctx, "s1", "SELECT $1::int + 1", nil); err != nil {
		t.Fatal(err)
	}
	if v, err := exec(c, "s1", "4"); err != nil || v != "5" {
		t.Fatalf("re-prepared s1: %q %v", v, err)
	}
	// A Parse that fails leaves no statement behind.
	if _, err := c.Prepare(ctx, "bad", "SELEC 1", nil); err == nil {
		t.Fatal("syntax error not reported")
	}
	_, err = exec(c, "bad", "1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "26000" {
		t.Fatalf("want invalid_sql_statement_name for a failed Parse, got %v", err)
	}
	// DEALLOCATE ALL and DISCARD ALL through simple queries.
	if _, err := c.Exec(ctx, "DEALLOCATE ALL").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := exec(c, "s1", "4"); err == nil {
		t.Fatal("s1 usable after DEALLOCATE ALL")
	}
	if _, err := other.Exec(ctx, "DISCARD ALL").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := exec(other, "s1", "x"); err == nil {
		t.Fatal("other's s1 usable after DISCARD ALL")
	}
}
