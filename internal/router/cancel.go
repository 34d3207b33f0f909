package router

import "github.com/pauseproxy/pauseproxy/internal/pool"

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
//   - The statement ended as the cancel arrived: the server connection is
//     kept from the next client until the cancel is done (pool.Conn.Cancel
//     parks it), as PgBouncer does, so it finds the backend idle.

// wrote notes that bytes of this binding reached srv, and sends a cancel
// that waited for that. Called by the client pump.
func (s *Session) wrote(srv *pool.Conn) {
	s.written.Store(true)
	if s.swallow.Load() == 0 && s.cancelWanted.CompareAndSwap(true, false) {
		go s.r.cancelServer(s, srv)
	}
}
