package router

import (
	"context"
	"log/slog"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Safe retry.
//
// When a primary is going away or has been demoted, it refuses work with
// 57P01 (admin_shutdown), 57P02 (crash_shutdown), 57P03
// (cannot_connect_now) or 25006 (read_only_sql_transaction). A batch the
// server refused that way did nothing, so running it again on the new
// primary is safe, under these conditions, all required:
//
//   - transaction mode, and the session was outside a transaction when the
//     batch started (an implicit transaction: a lone simple Query, or an
//     extended-protocol batch up to its Sync);
//   - the batch was complete (its Query or Sync sent) and nothing else was
//     pipelined after it;
//   - none of its response had reached the client yet: either nothing was
//     queued for it, or what was queued (a RowDescription and rows that
//     PostgreSQL flushed ahead of the FATAL that cut the statement) has not
//     been written to the client socket and no statement of the batch
//     completed (no CommandComplete: an implicit transaction commits only
//     after its statement completes); that partial answer is dropped;
//   - the refusal carried one of the codes above (an ErrorResponse, or the
//     FATAL a server sends before closing).
//
// Never after a bare connection loss: the server may have committed before
// the connection broke. Never for named statements parsed in the batch
// (their Parse was answered in a way the client saw). The batch is held
// like any new transaction (the refusal starts a role change) and sent to
// the next verified primary; at most maxRetries times.

// maxRetries bounds how often one batch is run again.
const maxRetries = 3

// maxBatch is the largest batch kept for a retry.
const maxBatch = 64 << 10

// retryable reports the SQLSTATEs after which a refused batch is safe to run
// again.
func retryable(code string) bool { return roleChangeCode(code) }

// resetBatch starts capturing a new batch at a binding. Called with mu
// held.
func (s *Session) resetBatch() {
	s.batch = s.batch[:0]
	s.batchOK = s.mode == config.PoolModeTransaction && s.tx == wire.TxIdle
	s.batchDone = false
	s.responded.Store(false)
	s.completed.Store(false)
	s.batchMark = s.markClient()
	if !s.inRetry {
		s.retries = 0
	}
}

// capture keeps m while the batch may still be run again. Called with mu
// held.
func (s *Session) capture(m wire.Message) {
	typ := m.Type()
	switch {
	case s.batchDone,
		len(s.batch)+len(m) > maxBatch,
		typ == wire.MsgCopyData || typ == wire.MsgCopyDone || typ == wire.MsgCopyFail || typ == wire.MsgFunctionCall:
		s.batchOK = false
		return
	case typ == wire.MsgParse && s.tracking:
		if name, _, ok := parseName(m); !ok || len(name) > 0 {
			s.batchOK = false
			return
		}
	}
	s.batch = append(s.batch, m...)
	if typ == wire.MsgQuery || typ == wire.MsgSync {
		s.batchDone = true
	}
}

// refusedLocked reports whether the batch in flight can be run again after
// the server refused it with code. Called with mu held.
func (s *Session) refusedLocked(code string) bool {
	return retryable(code) && s.rerunnableLocked()
}

// rerunnableLocked reports whether the batch can run again: whole, kept,
// nothing of its answer seen by the client, and retries left. Called with
// mu held.
func (s *Session) rerunnableLocked() bool {
	return s.batchOK && s.batchDone && s.unseenLocked() &&
		s.bnd.pending == 1 && s.bnd.unsynced == 0 && s.retries < maxRetries
}

// unseenLocked reports whether the client has seen nothing of the batch's
// response: nothing was queued, or no statement completed and nothing was
// written to the client since the batch began. Called with mu held (it
// takes wmu: mu before wmu).
func (s *Session) unseenLocked() bool {
	if !s.responded.Load() {
		return true
	}
	if s.completed.Load() {
		return false
	}
	return !s.writtenSince(s.batchMark)
}

// retryError handles an ErrorResponse that refuses the whole batch: it is
// not forwarded; the ReadyForQuery that follows ends the binding and wakes
// the client pump. It reports whether the error was taken over.
func (s *Session) retryError(c *pool.Conn, m wire.Message) bool {
	f, err := wire.ParseError(m)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.refusedLocked(string(f.Code)) {
		return false
	}
	s.retryCode = string(f.Code)
	s.retryArmed = true
	if s.tracking {
		s.response(c, m, nil)
	}
	return true
}

// retryAtReadyLocked ends a binding whose batch was refused: the server is
// retired (it is not a writable primary any more) and a retry goroutine
// runs the batch again. Called with mu held.
func (s *Session) retryAtReadyLocked(c *pool.Conn) {
	// A partial answer the client has not seen goes: the batch runs
	// again from the start (refusedLocked checked it was not written).
	s.rollbackClient(s.batchMark)
	s.retryArmed = false
	s.loseBindingLocked()
	s.setPhaseLocked(phaseRetrying)
	c.Retire()
	// The client waits for the answer: no idle timeout while the batch
	// waits for a primary.
	s.idleDeadlineLocked()
	if !s.closing {
		s.retryQueued.Store(true)
		go s.runRetry()
	}
}

// runQueuedRetry runs a queued retry, if there is one and nobody else has
// taken it: the retry goroutine, or the pump when it got the client's next
// message first (whichever holds pmu first), so the batch always runs
// before that message. It returns false when the session must end. Called
// with pmu held.
func (s *Session) runQueuedRetry() bool {
	if !s.retryQueued.Load() || !s.retryQueued.CompareAndSwap(true, false) {
		// The load first: this runs at every blocking read, and a retry
		// is rare.
		return true
	}
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return true
	}
	if !s.retry(s.runCtx) {
		s.retryEnded = true
		s.cc.Close()
		return false
	}
	if len(s.sbuf) > 0 {
		s.flushServer()
	}
	return true
}

// runRetry runs the refused batch again on the client pump's behalf. The
// pump is blocked reading the client (the batch was complete and nothing
// followed it) or about to be: runRetry takes the pump's side of the
// session (pmu) instead of interrupting its read. When the pump gets pmu
// first (the client sent something), it runs the batch itself before the
// new message (runQueuedRetry). A retry that must end the session closes
// the client connection, which ends the pump's read.
func (s *Session) runRetry() {
	s.pmu.Lock()
	s.runQueuedRetry()
	s.pmu.Unlock()
}

// retry runs the refused batch again: it binds (waiting in the hold until
// a primary is verified) and sends the batch's messages as the client sent
// them. It returns false when the session must end. Called with pmu held.
func (s *Session) retry(ctx context.Context) bool {
	s.mu.Lock()
	batch := append(s.retryBuf[:0], s.batch...)
	s.retryBuf = batch
	s.retries++
	code := s.retryCode
	s.mu.Unlock()
	s.db.stats.Retries.Add(1)
	s.r.log.Info("running a refused batch again on the next primary",
		slog.Uint64("client", s.ID), slog.String("database", s.db.Name), slog.String("sqlstate", code))
	s.inRetry = true
	defer func() { s.inRetry = false }()
	for len(batch) >= 5 {
		n := msgLen(batch) + 1
		if n > len(batch) {
			break
		}
		if !s.handle(ctx, wire.Message(batch[:n])) {
			return false
		}
		batch = batch[n:]
	}
	return true
}
