package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

var pg *pgtest.Cluster

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{}, func(c *pgtest.Cluster) { pg = c })
}

// startForwarder starts kind with a pool of two server connections and
// closes it when the test ends. epoll splits the pool between its loops.
func startForwarder(t *testing.T, v variant, loops int) forwarder {
	t.Helper()
	f, err := start(v.kind, config{
		Listen:    "127.0.0.1:0",
		ServerDSN: pg.DSN(pgtest.Superuser, "", "postgres"),
		Pool:      2,
		Loops:     loops,
		Raw:       v.raw,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// connect opens a pgx connection through f in the given mode. sslmode
// prefer makes pgx send an SSLRequest first, which the forwarders decline.
func connect(t *testing.T, ctx context.Context, f forwarder, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s@%s/postgres?sslmode=prefer", pgtest.Superuser, f.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	// Statements in one Sync each: in transaction mode a statement
	// prepared (even unnamed) in one transaction may be used on another
	// server connection in the next (pgx's DescribeExec and cached modes).
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// variant is a forwarder as the harness runs it.
type variant struct {
	kind string
	raw  bool
}

var variants = []variant{{kind: "pair"}, {kind: "single"}, {kind: "epoll"}, {kind: "epoll", raw: true}}

func (v variant) String() string {
	if v.raw {
		return v.kind + "-raw"
	}
	return v.kind
}

var modes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"simple", pgx.QueryExecModeSimpleProtocol},
	{"extended", pgx.QueryExecModeExec},
}

// TestQueries runs more clients than server connections, each with
// queries, an error and a transaction, in every protocol, through every
// forwarder.
func TestQueries(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			f := startForwarder(t, v, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, 2*len(modes))
			for _, m := range modes {
				for range 2 {
					c := connect(t, ctx, f, m.mode)
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := exercise(ctx, c); err != nil {
							errs <- fmt.Errorf("%s: %w", m.name, err)
						}
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// exercise runs what every client of TestQueries does.
func exercise(ctx context.Context, c *pgx.Conn) error {
	for i := range 20 {
		var got int
		if err := c.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&got); err != nil {
			return fmt.Errorf("query %d: %w", i, err)
		}
		if got != i+1 {
			return fmt.Errorf("query %d: got %d", i, got)
		}
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM generate_series(1, 5000)").Scan(&n); err != nil || n != 5000 {
		return fmt.Errorf("5000 rows: %d, %v", n, err)
	}
	_, err := c.Exec(ctx, "SELECT 1/0")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		return fmt.Errorf("division by zero: %v, want SQLSTATE 22012", err)
	}
	// A transaction stays on one server connection.
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var pid1, pid2 int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		return err
	}
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		return err
	}
	if pid1 != pid2 {
		return fmt.Errorf("transaction moved from backend %d to %d", pid1, pid2)
	}
	return tx.Commit(ctx)
}

// TestTransactionHoldsServer checks the release rule end to end: while one
// client is inside a transaction, another client's transactions all run on
// the pool's other server connection; once the first commits, its
// connection serves others again.
func TestTransactionHoldsServer(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			// One loop, so that epoll's pool is not split.
			f := startForwarder(t, v, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := connect(t, ctx, f, pgx.QueryExecModeSimpleProtocol)
			b := connect(t, ctx, f, pgx.QueryExecModeExec)
			tx, err := a.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var held int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&held); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				var pid int
				if err := b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
					t.Fatal(err)
				}
				if pid == held {
					t.Fatalf("b ran on backend %d, held by a's open transaction", pid)
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			// Both connections are free now: b, alone, may get either. Two
			// clients each in a transaction must get both.
			txA, err := a.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer txA.Rollback(ctx)
			txB, err := b.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer txB.Rollback(ctx)
			var pa, pb int
			if err := txA.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pa); err != nil {
				t.Fatal(err)
			}
			if err := txB.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pb); err != nil {
				t.Fatal(err)
			}
			if pa == pb {
				t.Fatalf("two open transactions on one backend %d", pa)
			}
		})
	}
}

// TestTerminateReleases checks that a client that says Terminate while
// idle gives its server connection back: a pool of two serves many more
// logins than that, one after the other.
func TestTerminateReleases(t *testing.T) {
	for _, v := range variants {
		t.Run(v.String(), func(t *testing.T) {
			f := startForwarder(t, v, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 10 {
				c, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", pgtest.Superuser, f.Addr()))
				if err != nil {
					t.Fatalf("login %d: %v", i, err)
				}
				if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
					t.Fatalf("login %d: %v", i, err)
				}
				if err := c.Close(ctx); err != nil {
					t.Fatalf("login %d: close: %v", i, err)
				}
			}
		})
	}
}
