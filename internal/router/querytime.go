package router

import "time"

// Query time for SHOW STATS (total_query_time, avg_query_time): the time a
// server connection spends with a client's work outstanding, from the
// Query or Sync that gives an idle server work to the ReadyForQuery that
// ends the last of it. Pipelined batches count once, not once each, and
// time idle in a transaction does not count: PgBouncer's "actively
// connected to PostgreSQL, executing queries". The two hooks ride on the
// query_timeout arming, which sees exactly those points.

// queryStartedLocked runs when a Query/Sync/FunctionCall was counted in
// pending. Called with mu held.
func (s *Session) queryStartedLocked() {
	if s.bnd.pending == 1 {
		s.queryStart = time.Now()
	}
}

// queryEndedLocked runs at a ReadyForQuery, once pending was decremented.
// Called with mu held.
func (s *Session) queryEndedLocked() {
	if s.bnd.pending <= 0 && !s.queryStart.IsZero() {
		if s.db != nil {
			s.db.stats.QueryNanos.Add(int64(time.Since(s.queryStart)))
		}
		s.queryStart = time.Time{}
	}
}

// Counters of the prepared statements the proxy tracks (SHOW STATS
// total_client_parse_count, total_server_parse_count, total_bind_count).
// A nil database (the package's fuzz tests build bare sessions) counts
// nothing.

func (d *Database) noteClientParse() {
	if d != nil {
		d.stats.ClientParses.Add(1)
	}
}

func (d *Database) noteServerParse() {
	if d != nil {
		d.stats.ServerParses.Add(1)
	}
}

func (d *Database) noteBind() {
	if d != nil {
		d.stats.Binds.Add(1)
	}
}
