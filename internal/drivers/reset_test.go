package drivers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestResetKeepsStartupParameters: whatever string carries a RESET ALL,
// PostgreSQL takes the session's parameters back to the values given at
// startup, not to the server's defaults. asyncpg's pool sends one simple
// Query of several statements at every release; through the proxy the
// client must see the same as directly.
func TestResetKeepsStartupParameters(t *testing.T) {
	p := startProxy(t)
	const startup = "?options=-c%20statement_timeout%3D42001%20-c%20search_path%3Ddrv_reset"
	targets := []struct{ name, dsn string }{
		{"directly", pg.DSN("app", "apppass", "appdb") + "&" + startup[1:]},
		{"through the proxy", fmt.Sprintf("postgres://app:apppass@127.0.0.1:%d/appdb?sslmode=disable&%s", p.Port, startup[1:])},
	}
	for _, tc := range []struct {
		reset    string
		extended bool // sent with the extended protocol, else as a simple Query
	}{
		{reset: "RESET ALL"},
		{reset: "RESET ALL", extended: true},
		{reset: "SET statement_timeout TO DEFAULT", extended: true},
		// asyncpg 0.27 Pool.release (Connection.reset): one simple Query.
		{reset: "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;"},
		{reset: "RESET statement_timeout; RESET search_path"},
		{reset: "SELECT 1; RESET ALL"},
	} {
		reset := tc.reset
		name := reset
		if tc.extended {
			name += " (extended)"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var got [2]string
			for i, to := range targets {
				c, err := pgconn.Connect(ctx, to.dsn)
				if err != nil {
					t.Fatalf("connect %s: %v", to.name, err)
				}
				defer c.Close(context.Background())
				if tc.extended {
					err = c.ExecParams(ctx, reset, nil, nil, nil, nil).Read().Err
				} else {
					_, err = c.Exec(ctx, reset).ReadAll()
				}
				if err != nil {
					t.Fatalf("%s %q: %v", to.name, reset, err)
				}
				res := c.ExecParams(ctx, "SELECT current_setting('statement_timeout') || ' ' || current_setting('search_path')", nil, nil, nil, nil).Read()
				if res.Err != nil {
					t.Fatalf("%s: %v", to.name, res.Err)
				}
				got[i] = string(res.Rows[0][0])
			}
			if got[0] != "42001ms drv_reset" {
				t.Fatalf("directly: %q (the test's expectation of PostgreSQL is wrong)", got[0])
			}
			if got[1] != got[0] {
				t.Errorf("after %q: through the proxy statement_timeout and search_path are %q, directly %q", reset, got[1], got[0])
			}
		})
	}
}
