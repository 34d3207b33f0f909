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
	if s.pending == 1 {
		s.queryStart = time.Now()
	}
}

// queryEndedLocked runs at a ReadyForQuery, once pending was decremented.
// Called with mu held.
func (s *Session) queryEndedLocked() {
	if s.pending <= 0 && !s.queryStart.IsZero() {
		s.db.stats.QueryNanos.Add(int64(time.Since(s.queryStart)))
		s.queryStart = time.Time{}
	}
}
