package proxy_test

// Session mode as pgx's own test suite sees it (scripts/pgx-suite.sh runs
// the whole suite; these are the behaviours of it that a pooler in front
// used to break, each named after the pgx v5.12.0 tests that check it).

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestSessionModeTerminatedBackendIsFatal: when the backend serving a
// session-mode client is terminated, the client gets PostgreSQL's FATAL
// (57P01, severity FATAL) and its connection is closed, whatever it was
// doing, as when connected directly; the proxy goes on serving others.
// pgx tests: TestFatalTxError, TestFatalRxError, TestBeginTxFatalErrorKillsConn,
// and in pgxpool TestPoolAcquireChecksIdleConns and
// TestConnDestroyedWhenBeginFailsFatally (a pool that learns of the death
// only from a FATAL and a closed socket).
func TestSessionModeTerminatedBackendIsFatal(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolMode: "session", PoolSize: 10})

	// terminate kills pid's backend from another client of the proxy, by
	// the PID the victim's BackendKeyData gave it.
	terminate := func(t *testing.T, ctx context.Context, pid uint32) {
		t.Helper()
		other := p.connect(t, ctx)
		var ok bool
		if err := other.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d): %v, %v", pid, ok, err)
		}
		other.Close(ctx)
	}

	tests := []struct {
		name string
		// runs is how often: pgx repeats the timing-sensitive ones.
		runs int
		// kill terminates c's backend and returns the error c's next
		// operation got.
		kill func(t *testing.T, ctx context.Context, c *pgx.Conn) error
	}{
		{
			name: "idle client, next statement (TestFatalTxError)",
			runs: 10,
			kill: func(t *testing.T, ctx context.Context, c *pgx.Conn) error {
				terminate(t, ctx, c.PgConn().PID())
				return c.QueryRow(ctx, "SELECT 1").Scan(new(int))
			},
		},
		{
			name: "statement running (TestFatalRxError)",
			runs: 1,
			kill: func(t *testing.T, ctx context.Context, c *pgx.Conn) error {
				var wg sync.WaitGroup
				var err error
				wg.Go(func() {
					var n int32
					var s string
					err = c.QueryRow(ctx, "SELECT 1::int4, pg_sleep(10)::varchar").Scan(&n, &s)
				})
				// The statement is running on the server first.
				pid := c.PgConn().PID()
				watcher := p.connect(t, ctx)
				proxytest.Eventually(t, 10*time.Second, "pg_sleep running", func() bool {
					var n int
					err := watcher.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%pg_sleep%'", int64(pid)).Scan(&n)
					return err == nil && n == 1
				})
				terminate(t, ctx, pid)
				wg.Wait()
				return err
			},
		},
		{
			name: "BEGIN that terminates its own backend (TestBeginTxFatalErrorKillsConn)",
			runs: 1,
			kill: func(t *testing.T, ctx context.Context, c *pgx.Conn) error {
				_, err := c.BeginTx(ctx, pgx.TxOptions{BeginQuery: "SELECT pg_terminate_backend(pg_backend_pid())"})
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range tt.runs {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c := p.connect(t, ctx)
				start := time.Now()
				err := tt.kill(t, ctx, c)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.SeverityUnlocalized != "FATAL" || pe.Code != "57P01" {
					cancel()
					t.Fatalf("want PostgreSQL's FATAL 57P01, got %v", err)
				}
				if !c.IsClosed() {
					cancel()
					t.Fatal("the client's connection is still open")
				}
				// Not a timeout that happened to fire: the FATAL comes
				// as soon as the server sends it.
				if d := time.Since(start); d > 5*time.Second {
					cancel()
					t.Fatalf("the FATAL took %v", d)
				}
				cancel()
			}
			// The proxy goes on: a new client gets a live backend.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var one int
			if err := p.connect(t, ctx).QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("a new client after the kills: %d, %v", one, err)
			}
		})
	}
}
