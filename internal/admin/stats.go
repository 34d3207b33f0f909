package admin

import (
	"sync"
	"time"
)

// SHOW STATS, STATS_TOTALS, STATS_AVERAGES and TOTALS. Totals count since
// the proxy started; averages are per second (counts, bytes) or per
// transaction (times, in microseconds) over the last stats period, as in
// PgBouncer.
//
// Differences from PgBouncer, documented in docs/admin.md: query_time is
// not measured (0); wait_time is the time clients waited for a server
// connection (in a hold or a full pool) per transaction; the averages are
// computed when asked, over the last window of at least StatsPeriod
// between two SHOW commands, rather than by a timer.

// dbCounters are one database's totals.
type dbCounters struct {
	xacts, queries, received, sent int64
	xactUS, waitUS                 int64
}

func (a dbCounters) minus(b dbCounters) dbCounters {
	return dbCounters{a.xacts - b.xacts, a.queries - b.queries, a.received - b.received,
		a.sent - b.sent, a.xactUS - b.xactUS, a.waitUS - b.waitUS}
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
		d := cur.minus(w.prev[name])
		var a dbCounters
		if secs > 0 {
			a.xacts = int64(float64(d.xacts) / secs)
			a.queries = int64(float64(d.queries) / secs)
			a.received = int64(float64(d.received) / secs)
			a.sent = int64(float64(d.sent) / secs)
		}
		if d.xacts > 0 {
			a.xactUS = d.xactUS / d.xacts
			a.waitUS = d.waitUS / d.xacts
		}
		out[name] = a
	}
	return out
}

// totals reads every database's counters.
func (c *Console) totals() ([]string, map[string]dbCounters) {
	var names []string
	out := map[string]dbCounters{}
	for _, d := range c.databases() {
		st := d.Stats()
		names = append(names, d.Name)
		out[d.Name] = dbCounters{
			xacts:    st.Xacts.Load(),
			queries:  st.Queries.Load(),
			received: st.Received.Load(),
			sent:     st.Sent.Load(),
			xactUS:   st.XactNanos.Load() / 1000,
			waitUS:   st.WaitNanos.Load() / 1000,
		}
	}
	return names, out
}

func (c *Console) showStats(r *reply) {
	names, tot := c.totals()
	avg := c.stats.averages(time.Now(), tot)
	columns := cols(oidText, "database", oidNumeric,
		"total_xact_count", "total_query_count", "total_received", "total_sent",
		"total_xact_time", "total_query_time", "total_wait_time",
		"avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
		"avg_xact_time", "avg_query_time", "avg_wait_time")
	var rows [][]any
	for _, name := range names {
		t, a := tot[name], avg[name]
		rows = append(rows, []any{name,
			t.xacts, t.queries, t.received, t.sent, t.xactUS, 0, t.waitUS,
			a.xacts, a.queries, a.received, a.sent, a.xactUS, 0, a.waitUS})
	}
	r.rows("SHOW", columns, rows)
}

// statsPairColumns are the columns of STATS_TOTALS and STATS_AVERAGES.
var statsPairColumns = cols(oidText, "database", oidNumeric,
	"xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time")

func statsRow(name string, v dbCounters) []any {
	return []any{name, v.xacts, v.queries, v.received, v.sent, v.xactUS, 0, v.waitUS}
}

func (c *Console) showStatsTotals(r *reply) {
	names, tot := c.totals()
	var rows [][]any
	for _, name := range names {
		rows = append(rows, statsRow(name, tot[name]))
	}
	r.rows("SHOW", statsPairColumns, rows)
}

func (c *Console) showStatsAverages(r *reply) {
	names, tot := c.totals()
	avg := c.stats.averages(time.Now(), tot)
	var rows [][]any
	for _, name := range names {
		rows = append(rows, statsRow(name, avg[name]))
	}
	r.rows("SHOW", statsPairColumns, rows)
}

// showTotals is SHOW STATS summed over the databases, as rows of name and
// value.
func (c *Console) showTotals(r *reply) {
	names, tot := c.totals()
	avg := c.stats.averages(time.Now(), tot)
	var t, a dbCounters
	var xactUS, waitUS int64 // per-transaction averages weighted by rate
	for _, name := range names {
		x, y := tot[name], avg[name]
		t = dbCounters{t.xacts + x.xacts, t.queries + x.queries, t.received + x.received, t.sent + x.sent, t.xactUS + x.xactUS, t.waitUS + x.waitUS}
		a = dbCounters{a.xacts + y.xacts, a.queries + y.queries, a.received + y.received, a.sent + y.sent, 0, 0}
		xactUS += y.xactUS * y.xacts
		waitUS += y.waitUS * y.xacts
	}
	if a.xacts > 0 {
		a.xactUS, a.waitUS = xactUS/a.xacts, waitUS/a.xacts
	}
	rows := [][]any{
		{"total_xact_count", t.xacts}, {"total_query_count", t.queries},
		{"total_client_bytes", t.received}, {"total_server_bytes", t.sent},
		{"total_xact_time", t.xactUS}, {"total_query_time", 0}, {"total_wait_time", t.waitUS},
		{"avg_xact_count", a.xacts}, {"avg_query_count", a.queries},
		{"avg_client_bytes", a.received}, {"avg_server_bytes", a.sent},
		{"avg_xact_time", a.xactUS}, {"avg_query_time", 0}, {"avg_wait_time", a.waitUS},
	}
	r.rows("SHOW", cols(oidText, "name", oidNumeric, "value"), rows)
}
