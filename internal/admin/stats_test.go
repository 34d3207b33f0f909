package admin_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SHOW STATS gives the figures pgbouncer_exporter reads: the time totals
// move with a workload (query time included), and the prepared statement
// and server assignment counters of PgBouncer 1.25 count what happened.
func TestShowStatsValues(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	c := p.connect(t)
	adm := console(t, p.Port, adminUser, adminPass)

	// A transaction that stays open a while, statements that take time,
	// and a named prepared statement run three times.
	if _, err := c.Exec(ctx, "BEGIN; SELECT pg_sleep(0.05)", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := c.Exec(ctx, "COMMIT", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil { // pgx: a named statement
			t.Fatal(err)
		}
	}
	// A client that waits for a server connection in a PAUSE.
	run(t, adm, "PAUSE appdb")
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT 1")
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	run(t, adm, "RESUME appdb")
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	st := one(t, adm, "SHOW STATS")
	num := func(col string) int64 {
		t.Helper()
		v, ok := st.get("appdb", col)
		if !ok {
			t.Fatalf("SHOW STATS has no %s for appdb: %v %v", col, st.Columns, st.Rows)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s = %q", col, v)
		}
		return n
	}
	for _, c := range []struct {
		col      string
		atLeast  int64
		describe string
	}{
		{"total_xact_time", 70_000, "the open transaction lasted 70ms or more"},
		{"total_query_time", 50_000, "pg_sleep(0.05) ran on the server"},
		{"total_wait_time", 40_000, "a client waited ~50ms in the PAUSE"},
		{"total_server_assignment_count", 5, "one server connection per transaction"},
		{"total_client_parse_count", 1, "the client prepared its statement"},
		{"total_server_parse_count", 1, "the proxy prepared it on a server"},
		{"total_bind_count", 3, "three executions of the named statement"},
	} {
		if got := num(c.col); got < c.atLeast {
			t.Errorf("%s = %d, want at least %d: %s", c.col, got, c.atLeast, c.describe)
		}
	}
	// Queries run inside transactions: their time is part of it.
	if q, x := num("total_query_time"), num("total_xact_time"); q > x {
		t.Errorf("total_query_time %d > total_xact_time %d", q, x)
	}
}
