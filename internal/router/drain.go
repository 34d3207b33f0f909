package router

import (
	"context"
)

// Drain is the graceful stop: sessions between transactions are closed now,
// sessions inside one are closed as soon as it ends, and new transactions
// are refused. It returns when no session is left, or with ctx's error
// (the caller then closes the rest).
func (r *Router) Drain(ctx context.Context) error {
	r.draining.Store(true)
	for _, s := range r.Sessions() {
		s.closeIfIdle()
	}
	return r.WaitIdle(ctx)
}

// Draining reports whether Drain was called.
func (r *Router) Draining() bool { return r.draining.Load() }

// closeIfIdle closes a session that has no server bound, telling the client
// why, as PostgreSQL does at a smart shutdown (57P01).
func (s *Session) closeIfIdle() {
	s.mu.Lock()
	idle := s.bnd.server == nil
	s.mu.Unlock()
	if idle {
		s.terminate()
	}
}

// terminate sends FATAL 57P01 and closes the client connection; the client
// pump then ends the session.
func (s *Session) terminate() {
	s.fatalClient("57P01", "pauseproxy: terminating connection due to shutdown")
}
