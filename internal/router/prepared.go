package router

// PreparedStatements returns how many named prepared statements the
// client has open (SHOW CLIENTS' prepared_statements, PgBouncer 1.21+).
// It counts only statements the proxy tracks (transaction mode with
// max_prepared_statements > 0); otherwise they live on the client's server
// connection and the proxy does not know them: 0.
func (s *Session) PreparedStatements() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stmts)
}
