package router

import (
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// phase is where a session is in its life (see doc.go). It is set only by
// setPhaseLocked, which also keeps what SHOW CLIENTS shows.
type phase uint8

const (
	// phaseIdle: no server connection bound; the client pump waits for
	// the client's next message (client_idle_timeout).
	phaseIdle phase = iota
	// phaseWaiting: the client sent a message and bind waits for a
	// server connection: a full pool, a PAUSE, a role-change hold
	// (hold_timeout, query_wait_timeout; a CancelRequest ends it).
	phaseWaiting
	// phaseActive: a server connection is bound: a transaction, or a
	// batch of an implicit one, runs; in session mode, the whole session.
	phaseActive
	// phaseRetrying: the server refused the batch as it went away; it
	// runs again, on the pump's side of the session, once a primary is
	// verified (retry.go).
	phaseRetrying
)

// String is the state SHOW CLIENTS displays (PgBouncer's names).
func (p phase) String() string {
	switch p {
	case phaseWaiting, phaseRetrying:
		return "waiting"
	case phaseActive:
		return "active"
	default:
		return "idle"
	}
}

// setPhaseLocked moves the session to p. Called with mu held.
func (s *Session) setPhaseLocked(p phase) {
	if p == phaseWaiting || p == phaseRetrying {
		if s.phase != phaseWaiting && s.phase != phaseRetrying {
			s.waitStart = time.Now()
		}
	}
	s.phase = p
}

// binding is the state of one server connection bound to the session,
// made by attachLocked when bind gets a connection and dropped by
// detachLocked when the binding ends (release at a ReadyForQuery, a retry,
// the connection's loss, the session's end). Guarded by Session.mu.
type binding struct {
	server   *pool.Conn
	pending  int       // Query/Sync/FunctionCall forwarded whose ReadyForQuery has not arrived
	unsynced int       // messages forwarded since the last Query/Sync
	sinceExe int       // Syncs forwarded since the last Execute/Query (ignored by a server in COPY IN)
	copyIn   bool      // the server sent CopyInResponse since the last ReadyForQuery
	start    time.Time // when the binding began: the transaction's start
}

// attachLocked starts a binding to c. Called with mu held.
func (s *Session) attachLocked(c *pool.Conn, now time.Time) {
	s.bnd = binding{server: c, start: now}
	s.lastStart = now
	s.exps.reset()
}

// detachLocked ends the binding. Called with mu held.
func (s *Session) detachLocked() {
	s.bnd = binding{}
}

// loseBindingLocked ends a binding before its answers all came (the
// connection was lost, or the batch is run again elsewhere): what was
// expected of it is dropped, the proxy's own queries on it are forgotten,
// and a pump waiting for a shape check on it stops waiting. Called with mu
// held.
func (s *Session) loseBindingLocked() {
	s.detachLocked()
	s.swallow.Store(0)
	s.exps.reset()
	s.shapeChecked(true)
}

// releasableLocked is the one rule for handing a server connection back
// in transaction mode, checked at every ReadyForQuery: every Query, Sync
// and FunctionCall sent has had its ReadyForQuery, nothing was sent since,
// the proxy owes no answer of its own, and no transaction is open (status
// idle). The same point is the safe one to move a client to another
// server connection (cockroachdb sqlproxy's isSafeTransferPoint, PgBouncer's
// release at ReadyForQuery 'I'). Called with mu held.
func (s *Session) releasableLocked(status byte) bool {
	return s.mode == config.PoolModeTransaction && s.bnd.pending <= 0 && s.bnd.unsynced == 0 &&
		status == wire.TxIdle && s.exps.empty()
}
