package router

import (
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Timeouts with PgBouncer's meaning, read from the configuration each time
// they are armed, so a SET or RELOAD applies to connected clients:
// client_idle_timeout and idle_transaction_timeout as the client socket's
// read deadline, query_timeout as a cancel of the batch that runs too
// long, transaction_timeout (PgBouncer 1.25) as the end of a transaction
// open too long.

// idleDeadlineLocked sets the client read deadline for the session's state:
// idle_transaction_timeout when it waits for the client inside a
// transaction, client_idle_timeout when it waits between transactions,
// none while the server works on something. Both the client pump (before
// it reads) and the reader goroutine (at a ReadyForQuery, while the pump
// is already blocked in its read) call it, under mu, so the deadline
// always matches the state the last of them saw; the configuration is read
// each time, so a SET or RELOAD applies to connected clients. Called with
// mu held.
func (s *Session) idleDeadlineLocked() {
	var d time.Duration
	if s.bnd.pending <= 0 && !s.closing && s.phase != phaseRetrying {
		cfg := s.r.cfg()
		if s.bnd.server != nil && (s.tx == wire.TxActive || s.tx == wire.TxFailed) {
			d = cfg.IdleTransactionTimeout
		} else {
			d = cfg.ClientIdleTimeout
		}
	}
	switch {
	case d > 0:
		s.cc.SetReadDeadline(time.Now().Add(d))
		s.deadline = true
	case s.deadline:
		s.cc.SetReadDeadline(time.Time{})
		s.deadline = false
	}
}

// armQueryTimeoutLocked starts query_timeout for a batch the client just
// completed, when none runs yet: PgBouncer's query_timeout, except that the
// query is cancelled (57014 to the client, who keeps its connection)
// instead of both connections being closed. Called with mu held.
func (s *Session) armQueryTimeoutLocked() {
	s.queryStartedLocked()
	d := s.r.cfg().QueryTimeout
	if d <= 0 || s.bnd.pending != 1 {
		return
	}
	if s.queryTimer == nil {
		s.queryTimer = time.AfterFunc(d, s.queryTimedOut)
	} else {
		s.queryTimer.Reset(d)
	}
}

// stopQueryTimeoutLocked stops query_timeout once nothing is outstanding.
// Called with mu held.
func (s *Session) stopQueryTimeoutLocked() {
	s.queryEndedLocked()
	if s.queryTimer != nil && s.bnd.pending <= 0 {
		s.queryTimer.Stop()
	}
}

func (s *Session) queryTimedOut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.bnd.server
	if srv == nil || s.bnd.pending <= 0 {
		return
	}
	s.r.log.Info("query_timeout: cancelling the running query", slog.Uint64("client", s.ID), slog.String("database", s.db.Name))
	s.cancelLocked(srv)
}

// armTxTimeoutLocked starts transaction_timeout (PgBouncer 1.25) for the
// transaction that begins: in transaction mode at each binding, in session
// mode when the server reports a transaction open. Called with mu held.
func (s *Session) armTxTimeoutLocked() {
	d := s.r.cfg().TransactionTimeout
	if d <= 0 {
		return
	}
	s.txStart = time.Now()
	if s.txTimer == nil {
		s.txTimer = time.AfterFunc(d, s.txTimedOut)
	} else {
		s.txTimer.Reset(d)
	}
}

// stopTxTimeoutLocked stops transaction_timeout at the transaction's end.
// Called with mu held.
func (s *Session) stopTxTimeoutLocked() {
	if s.txTimer != nil {
		s.txTimer.Stop()
		s.txStart = time.Time{}
	}
}

// txTimedOut ends a client whose transaction outlived transaction_timeout,
// idle or not, as PgBouncer does: FATAL 25P04 (PostgreSQL 17's
// transaction_timeout), and the server connection is closed with it (end).
func (s *Session) txTimedOut() {
	d := s.r.cfg().TransactionTimeout
	s.mu.Lock()
	running := s.bnd.server != nil && !s.txStart.IsZero() && d > 0 && time.Since(s.txStart) >= d
	if running {
		s.closing = true
	}
	s.mu.Unlock()
	if !running {
		// Stale: the transaction ended, or another began since.
		return
	}
	s.r.log.Info("transaction_timeout: closing the client", slog.Uint64("client", s.ID), slog.String("database", s.db.Name))
	s.cc.SetWriteDeadline(time.Now().Add(time.Second))
	s.writeClient(wire.AppendError(nil, wire.SeverityFatal, "25P04", "pauseproxy: transaction timeout (transaction_timeout)"))
	s.cc.Close()
}
