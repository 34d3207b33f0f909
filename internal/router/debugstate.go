package router

import "fmt"

// DebugState describes a session's internal state, for tests and
// debugging.
func (s *Session) DebugState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := uint64(0)
	if s.bnd.server != nil {
		srv = s.bnd.server.ID
	}
	return fmt.Sprintf("client=%d server=%d pending=%d unsynced=%d tx=%c swallow=%d sbuf=%d exps=%v discard=%v state=%s",
		s.ID, srv, s.bnd.pending, s.bnd.unsynced, s.tx, s.swallow.Load(), len(s.sbuf), s.exps.q[s.exps.head:], s.discard, s.phase)
}
