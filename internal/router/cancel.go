package router

import (
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// Cancels that reach the right statement.
//
// PostgreSQL cancels whatever the backend runs when the request arrives,
// and nothing when it is idle. Through a pooler three windows would send a
// client's cancel elsewhere:
//
//   - The client's statement is still queued in the proxy: the wait ends
//     with 57014 and the statement is never sent (Router.Cancel, bind),
//     even when the cancel comes just as a server connection is handed
//     over.
//   - The server connection is bound but has not received the statement
//     yet, or runs the proxy's own SETs ahead of it (a fresh binding): the
//     cancel waits (cancelWanted) until the statement is on its way (wrote)
//     and the proxy's query answered (Session.swallowed). Each side sets
//     its own flag before it looks at the other's and the one that wins
//     the CompareAndSwap sends the cancel, so exactly one does.
//   - The statement was written only just now, at the start of a binding:
//     the backend may not run it yet (it had to wake, or finish the
//     proxy's SET first), and PostgreSQL drops a cancel that reaches a
//     backend between statements. Such a cancel is sent again while the
//     same statement still runs (cancelCheckedLocked).
//   - The statement ended as the cancel arrived: the server connection is
//     kept from the next client until the cancel is done (pool.Conn.Cancel
//     parks it), as PgBouncer does, so it finds the backend idle.
//
// Every cancel is decided under mu while its server connection is still
// bound to the session, and marked in the pool there (cancelLocked): a
// statement that ends just as its cancel is decided (the server's answer
// crossing the CancelRequest) has its connection parked until the cancel
// is done, never handed to the next client with the cancel on its way.

// wrote notes that bytes of this binding reached srv, and sends a cancel
// that waited for that. Called by the client pump without mu, except by
// handle's parameter resync, which has just raised swallow and so takes
// no lock here.
func (s *Session) wrote(srv *pool.Conn) {
	s.written.Store(true)
	if s.swallow.Load() == 0 && s.cancelWanted.Load() {
		s.mu.Lock()
		s.cancelIfBoundLocked(srv)
		s.mu.Unlock()
	}
}

// cancelIfBoundLocked sends a cancel that waited, if srv is still the
// bound connection (a binding that ended has nothing left to cancel).
// Called with mu held.
//
// It goes out deferredCancelDelay later: the client's statement was just
// written (behind the proxy's own query, or to an idle backend), and
// PostgreSQL drops a cancel that reaches a backend still between two
// statements; a backend descheduled right there on a loaded machine would
// otherwise run the statement to its end. It is checked
// (cancelCheckedLocked) for the same reason.
func (s *Session) cancelIfBoundLocked(srv *pool.Conn) {
	if s.bnd.server != srv || !s.cancelWanted.CompareAndSwap(true, false) {
		return
	}
	s.sendCancelLocked(srv, deferredCancelDelay, cancelResends)
}

// freshBinding is how long after a binding began a cancel is sent the
// checked way (cancelCheckedLocked): the client's statement was written
// to the backend only just now, behind the proxy's SETs or to a backend
// idle until then, and may not run yet. Later in a binding a cancel finds
// the backend as it would directly on PostgreSQL.
const freshBinding = 200 * time.Millisecond

// cancelCheckedLocked sends a cancel now, checked: should the statement
// still run cancelRecheck after the cancel went out (the backend was not
// on it yet: a machine loaded enough to keep it off the CPU that long),
// the cancel is sent again, up to cancelResends times, as long as the same
// binding still waits for the same answer. The client asked for it to
// stop while it ran; directly on PostgreSQL its cancel would have found it
// running. Called with mu held and srv bound to s.
func (s *Session) cancelCheckedLocked(srv *pool.Conn) {
	s.sendCancelLocked(srv, 0, cancelResends)
}

// cancelLocked cancels what srv's backend runs for this session, once.
// Called with mu held and srv bound to s.
func (s *Session) cancelLocked(srv *pool.Conn) { s.sendCancelLocked(srv, 0, 0) }

// deferredCancelDelay is how long a cancel that waited for the client's
// statement to reach the server waits more before it is sent.
const deferredCancelDelay = 50 * time.Millisecond

// cancelRecheck and cancelResends bound the resending of a checked cancel
// whose statement still runs.
const (
	cancelRecheck = 500 * time.Millisecond
	cancelResends = 3
)

// sendCancelLocked marks a cancel of srv's backend in the pool now, so a
// release that follows parks srv until the cancel is done, and sends it
// after delay, then up to resends more times while the same statement
// still runs. Called with mu held and srv bound to s.
func (s *Session) sendCancelLocked(srv *pool.Conn, delay time.Duration, resends int) {
	srv.BeginCancel()
	binding, answered := s.binding, s.answered
	go func() {
		time.Sleep(delay)
		for i := 0; ; i++ {
			if err := srv.SendCancel(5 * time.Second); err != nil {
				s.r.log.Warn("cancel request failed", slog.Uint64("client", s.ID), slog.Any("err", err))
				return
			}
			if i == resends {
				return
			}
			time.Sleep(cancelRecheck)
			s.mu.Lock()
			running := s.bnd.server == srv && s.binding == binding && s.answered == answered && s.bnd.pending > 0 && !s.closing
			if running {
				srv.BeginCancel()
			}
			s.mu.Unlock()
			if !running {
				return
			}
			s.r.log.Info("cancel sent again: the statement it was meant for still runs", slog.Uint64("client", s.ID))
		}
	}()
}
