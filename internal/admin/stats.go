package admin

import (
	"sync"
	"time"
)

// SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS, with PgBouncer
// 1.25's columns (src/stats.c). Totals count since the proxy started;
// averages are per second (counts, bytes) or per unit (times, in
// microseconds: xact_time per transaction, query_time per query,
// wait_time per server assignment) over the last stats period, as in
// PgBouncer.
//
// What the figures measure, documented in docs/admin.md:
//   - server_assignment_count: server connections given to a client;
//   - xact_time: time a client held a server connection in a transaction;
//   - query_time: time a server had a client's work outstanding, from the
//     Query or Sync that gave it work to the ReadyForQuery that ended it
//     (idle in transaction excluded);
//   - wait_time: time clients waited for a server connection (in a hold
//     or a full pool);
//   - client_parse_count, server_parse_count, bind_count: named prepared
//     statements tracked in transaction mode (max_prepared_statements).
//
// The averages are computed when asked, over the last window of at least
// StatsPeriod between two SHOW commands, rather than by a timer.

// dbCounters are one database's totals.
type dbCounters struct {
	assignments, xacts, queries, received, sent int64
	xactUS, queryUS, waitUS                     int64
	clientParses, serverParses, binds           int64
}

func (a dbCounters) minus(b dbCounters) dbCounters {
	return dbCounters{
		a.assignments - b.assignments, a.xacts - b.xacts, a.queries - b.queries, a.received - b.received, a.sent - b.sent,
		a.xactUS - b.xactUS, a.queryUS - b.queryUS, a.waitUS - b.waitUS,
		a.clientParses - b.clientParses, a.serverParses - b.serverParses, a.binds - b.binds,
	}
}

func (a dbCounters) plus(b dbCounters) dbCounters {
	return dbCounters{
		a.assignments + b.assignments, a.xacts + b.xacts, a.queries + b.queries, a.received + b.received, a.sent + b.sent,
		a.xactUS + b.xactUS, a.queryUS + b.queryUS, a.waitUS + b.waitUS,
		a.clientParses + b.clientParses, a.serverParses + b.serverParses, a.binds + b.binds,
	}
}

// statsWindow keeps two samples of the totals at least period apart.
type statsWindow struct {
	period time.Duration

	mu     sync.Mutex // guards the fields below
	prevAt time.Time
	prev   map[string]dbCounters
	curAt  time.Time
	cur    map[string]dbCounters
}

// averages records now's totals and returns the averages over the last
// full window (zeros until there is one).
func (w *statsWindow) averages(now time.Time, totals map[string]dbCounters) map[string]dbCounters {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.cur == nil:
		w.cur, w.curAt = totals, now
	case now.Sub(w.curAt) >= w.period:
		w.prev, w.prevAt = w.cur, w.curAt
		w.cur, w.curAt = totals, now
	}
	out := make(map[string]dbCounters, len(totals))
	if w.prev == nil {
		return out
	}
	secs := w.curAt.Sub(w.prevAt).Seconds()
	for name, cur := range w.cur {
		out[name] = average(cur.minus(w.prev[name]), secs)
	}
	return out
}

// average turns the growth d over secs seconds into PgBouncer's averages
// (stats.c calc_average).
func average(d dbCounters, secs float64) dbCounters {
	var a dbCounters
	if secs > 0 {
		rate := func(n int64) int64 { return int64(float64(n) / secs) }
		a.assignments = rate(d.assignments)
		a.xacts = rate(d.xacts)
		a.queries = rate(d.queries)
		a.received = rate(d.received)
		a.sent = rate(d.sent)
		a.clientParses = rate(d.clientParses)
		a.serverParses = rate(d.serverParses)
		a.binds = rate(d.binds)
	}
	if d.xacts > 0 {
		a.xactUS = d.xactUS / d.xacts
	}
	if d.queries > 0 {
		a.queryUS = d.queryUS / d.queries
	}
	if d.assignments > 0 {
		a.waitUS = d.waitUS / d.assignments
	}
	return a
}

// totals reads every database's counters.
func (c *Console) totals() ([]string, map[string]dbCounters) {
	var names []string
	out := map[string]dbCounters{}
	for _, d := range c.databases() {
		st := d.Stats()
		names = append(names, d.Name)
		out[d.Name] = dbCounters{
			assignments:  st.Assignments.Load(),
			xacts:        st.Xacts.Load(),
			queries:      st.Queries.Load(),
			received:     st.Received.Load(),
			sent:         st.Sent.Load(),
			xactUS:       st.XactNanos.Load() / 1000,
			queryUS:      st.QueryNanos.Load() / 1000,
			waitUS:       st.WaitNanos.Load() / 1000,
			clientParses: st.ClientParses.Load(),
			serverParses: st.ServerParses.Load(),
			binds:        st.Binds.Load(),
		}
	}
	return names, out
}

// statsValues are a database's counters in PgBouncer 1.25's column order.
func statsValues(v dbCounters) []any {
	return []any{v.assignments, v.xacts, v.queries, v.received, v.sent, v.xactUS, v.queryUS, v.waitUS,
		v.clientParses, v.serverParses, v.binds}
}

func (c *Console) showStats(r *reply) {
	names, tot := c.totals()
	avg := c.stats.averages(time.Now(), tot)
	columns := cols(oidText, "database", oidNumeric,
		"total_server_assignment_count", "total_xact_count", "total_query_count", "total_received", "total_sent",
		"total_xact_time", "total_query_time", "total_wait_time",
		"total_client_parse_count", "total_server_parse_count", "total_bind_count",
		"avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
		"avg_xact_time", "avg_query_time", "avg_wait_time",
		"avg_client_parse_count", "avg_server_parse_count", "avg_bind_count")
	var rows [][]any
	for _, name := range names {
		row := append([]any{name}, statsValues(tot[name])...)
		rows = append(rows, append(row, statsValues(avg[name])...))
	}
	r.rows("SHOW", columns, rows)
}

// STATS_TOTALS and STATS_AVERAGES have the same columns but the last
// three, named as in PgBouncer 1.25.
var (
	statsTotalsColumns = cols(oidText, "database", oidNumeric,
		"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
		"xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count")
	statsAveragesColumns = cols(oidText, "database", oidNumeric,
		"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
		"xact_time", "query_time", "wait_time", "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count")
)

func (c *Console) showStatsTotals(r *reply) {
	names, tot := c.totals()
	var rows [][]any
	for _, name := range names {
		rows = append(rows, append([]any{name}, statsValues(tot[name])...))
	}
	r.rows("SHOW", statsTotalsColumns, rows)
}

func (c *Console) showStatsAverages(r *reply) {
	names, tot := c.totals()
	avg := c.stats.averages(time.Now(), tot)
	var rows [][]any
	for _, name := range names {
		rows = append(rows, append([]any{name}, statsValues(avg[name])...))
	}
	r.rows("SHOW", statsAveragesColumns, rows)
}

// totalsNames are SHOW TOTALS' row names, in PgBouncer 1.25's order
// (stats.c show_stat_totals: "total_" or "avg_" and the field name).
var totalsNames = []string{"server_assignment_count", "xact_count", "query_count", "client_bytes", "server_bytes",
	"xact_time", "query_time", "wait_time", "ps_client_parse_count", "ps_server_parse_count", "ps_bind_count"}

// showTotals is SHOW STATS summed over the databases, as rows of name and
// value. The averages are those of the sums, as in PgBouncer.
func (c *Console) showTotals(r *reply) {
	names, tot := c.totals()
	now := time.Now()
	c.stats.averages(now, tot) // keep the window moving
	var t dbCounters
	for _, name := range names {
		t = t.plus(tot[name])
	}
	a := c.totalsWindow.averages(now, map[string]dbCounters{"": t})[""]
	var rows [][]any
	for i, v := range statsValues(t) {
		rows = append(rows, []any{"total_" + totalsNames[i], v})
	}
	for i, v := range statsValues(a) {
		rows = append(rows, []any{"avg_" + totalsNames[i], v})
	}
	r.rows("SHOW", cols(oidText, "name", oidNumeric, "value"), rows)
}
