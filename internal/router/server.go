package router

import (
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// ServerMessage handles one message from the bound server: it forwards it
// to the client (unless it answers one of the proxy's own queries), tracks
// ReadyForQuery, and ends the binding at a safe point. It runs on the server
// connection's reader goroutine.
func (s *Session) ServerMessage(c *pool.Conn, m wire.Message, more bool) bool {
	typ := m.Type()
	if s.swallow.Load() > 0 {
		return s.swallowed(c, m)
	}
	s.db.stats.Sent.Add(int64(len(m)))
	switch typ {
	case wire.MsgReadyForQuery:
		return s.readyForQuery(c, m, more)
	case wire.MsgParameterStatus:
		s.paramStatus(c, m)
	case wire.MsgCopyInResponse:
		s.completed.Store(true) // for the safe retry: a COPY has begun
		s.mu.Lock()
		s.bnd.copyIn = true
		s.mu.Unlock()
	case wire.MsgCopyOutResponse, wire.MsgCopyBothResponse:
		s.completed.Store(true)
	case wire.MsgNotification:
		if s.mode == config.PoolModeTransaction {
			// Only the listener's connection delivers notifications in
			// transaction mode (listen.go); this one may be left over
			// from another client's LISTEN.
			return false
		}
	case wire.MsgErrorResponse:
		s.failed()
		if s.serverError(c, m) {
			// FATAL: the server is about to close. The client hears about
			// it as a lost connection (ServerFailed), with this reason,
			// but keeps its own connection. Nothing is flushed here:
			// ServerFailed decides whether what is queued goes out or
			// the batch runs again without it.
			return false
		}
		if s.retryError(c, m) {
			if !more {
				s.flushClient()
			}
			return false
		}
		if s.tracking {
			return s.matched(c, m, more)
		}
	case wire.MsgCommandComplete:
		s.completed.Store(true)
		s.db.stats.query()
		s.confirm(c, m)
		if s.tracking {
			return s.matched(c, m, more)
		}
	case wire.MsgEmptyQueryResponse, wire.MsgPortalSuspended:
		s.completed.Store(true)
		if s.tracking {
			return s.matched(c, m, more)
		}
	case wire.MsgParseComplete, wire.MsgBindComplete, wire.MsgCloseComplete, wire.MsgNoData,
		wire.MsgRowDescription, wire.MsgParameterDescription:
		if s.tracking {
			return s.matched(c, m, more)
		}
	}
	s.responded.Store(true)
	s.send(!more, m, nil, nil)
	return false
}

// matched forwards (or swallows) a server message that answers a tracked
// request, followed by the answers the proxy owes after it.
func (s *Session) matched(c *pool.Conn, m wire.Message, more bool) bool {
	s.mu.Lock()
	fwd, synth := s.response(c, m, s.rsynth[:0])
	s.rsynth = synth
	repl := s.repl
	s.repl = nil
	if fwd || repl != nil || len(synth) > 0 {
		s.responded.Store(true)
	}
	var a []byte
	if repl != nil {
		a = repl
	} else if fwd {
		a = m
	}
	s.sendLocked(!more, a, synth, nil)
	return false
}

// readyForQuery ends a batch. In transaction mode the server goes back to
// the pool when the client has nothing outstanding on it and no
// transaction is open: every Query/Sync it sent has had its ReadyForQuery,
// nothing was sent since, and the status is idle.
func (s *Session) readyForQuery(c *pool.Conn, m wire.Message, more bool) bool {
	status, _ := wire.ReadyForQueryStatus(m)
	s.mu.Lock()
	if s.retryArmed {
		s.retryAtReadyLocked(c)
		s.mu.Unlock()
		s.flushClient()
		return true
	}
	s.bnd.pending--
	s.answered++
	s.stopQueryTimeoutLocked()
	if s.mode == config.PoolModeSession && status == wire.TxIdle && s.bnd.pending <= 0 {
		// In session mode a transaction ends when the server says so.
		s.stopTxTimeoutLocked()
	}
	s.tx = status
	s.bnd.copyIn = false
	var synth []byte
	if s.tracking {
		_, synth = s.response(c, m, s.rsynth[:0])
		s.rsynth = synth
	}
	if s.fx {
		if acts := s.settleLocked(c, status); len(acts) > 0 {
			// The transaction committed LISTEN/UNLISTEN: register
			// them before the client hears it may go on. The binding
			// stays meanwhile, so anything the client pipelines is
			// answered after this ReadyForQuery.
			s.mu.Unlock()
			s.applyListen(acts)
			s.mu.Lock()
		}
	}
	var notes []byte
	if status == wire.TxIdle && s.bnd.pending <= 0 && len(s.notifyQ) > 0 {
		notes = s.takeNotifiesLocked()
	}
	// The client pump is most likely blocked reading already: the idle
	// timeouts start now.
	s.idleDeadlineLocked()
	release := s.releasableLocked(status)
	if release {
		s.stopTxTimeoutLocked()
		s.db.stats.xact(time.Since(s.bnd.start))
		s.detachLocked()
		s.setPhaseLocked(phaseIdle)
	}
	s.sendLocked(!release && !more, m, synth, notes)
	// On release the flush waits for Released: the server connection is
	// back in the pool before the client hears it may go on, so a client
	// running transactions back to back finds it there instead of
	// dialing another.
	return release
}

// Released runs once the connection this session released is back in the
// pool: the client now gets its ReadyForQuery.
func (s *Session) Released() {
	s.flushClient()
	if s.r.draining.Load() {
		s.terminate()
	}
}

// swallowed consumes the response to a query the proxy sent itself (SET of
// session parameters, the reset query). Reported parameters are recorded,
// and passed on to the client when they change what it last saw.
func (s *Session) swallowed(c *pool.Conn, m wire.Message) bool {
	switch m.Type() {
	case wire.MsgParameterStatus:
		// The proxy's own SET (or RESET ALL): the server connection's
		// record follows; the client hears of it only when the value
		// differs from what it last saw.
		if s.proxyParamStatus(c, m) {
			s.send(false, m, nil, nil)
		}
	case wire.MsgErrorResponse:
		f, _ := wire.ParseError(m)
		if sev := string(f.Severity); sev == "FATAL" || sev == "PANIC" {
			// The server is going away before it ran anything of the
			// client's batch queued behind this query.
			s.mu.Lock()
			s.fatalCode = string(f.Code)
			s.fatalReason = string(f.Message) + " (" + string(f.Code) + ")"
			s.mu.Unlock()
			// The loss is the server's, told to the client by
			// ServerFailed; not a failure of the proxy's query.
			s.r.log.Info("server went away during the proxy's own query", slog.Uint64("client", s.ID), slog.Uint64("server", c.ID),
				slog.String("sqlstate", string(f.Code)), slog.String("message", string(f.Message)))
			break
		}
		s.r.log.Warn("proxy query failed on server", slog.Uint64("client", s.ID), slog.Uint64("server", c.ID),
			slog.String("sqlstate", string(f.Code)), slog.String("message", string(f.Message)))
	case wire.MsgReadyForQuery:
		if s.swallow.Add(-1) == 0 {
			s.mu.Lock()
			end := s.endAfterSwallow
			if end {
				s.detachLocked()
			} else if s.written.Load() {
				// The client's cancel came while the proxy's own query ran
				// (cancel.go): its statement runs now.
				s.cancelIfBoundLocked(c)
			}
			s.mu.Unlock()
			return end
		}
	}
	return false
}

// paramStatus records a reported parameter on the server connection and,
// for the ones the proxy carries, as the client's expected value. It
// reports whether the value differs from what the client last saw.
func (s *Session) paramStatus(c *pool.Conn, m wire.Message) (changed bool) {
	n, value, ok := recordParam(c, m)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.want {
		if s.want[i].name == n {
			s.want[i].seen = string(value)
			if s.want[i].value == string(value) {
				return false
			}
			s.want[i].value = string(value)
			s.wantVer++
			return true
		}
	}
	return true
}

// recordParam decodes a ParameterStatus and records the value on the
// server connection.
func recordParam(c *pool.Conn, m wire.Message) (name string, value []byte, ok bool) {
	n, v, err := wire.ParameterStatus(m)
	if err != nil {
		return "", nil, false
	}
	name = string(n)
	c.SetParam(name, string(v))
	return name, v, true
}

// proxyParamStatus records a parameter the server reports in answer to the
// proxy's own query. The client's expected value stays; it reports
// whether the client must hear of the value (it differs from what the
// client last saw, or the client does not track it).
func (s *Session) proxyParamStatus(c *pool.Conn, m wire.Message) bool {
	n, value, ok := recordParam(c, m)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.want {
		if s.want[i].name == n {
			if s.want[i].seen == string(value) {
				return false
			}
			s.want[i].seen = string(value)
			return true
		}
	}
	return true
}

// serverError looks at an ErrorResponse for the signs of a primary going
// away (shutdown, crash recovery, read-only after demotion) and tells the
// database, which may start a role-change check. It reports whether the
// error is FATAL (or PANIC), remembering its reason for ServerFailed.
func (s *Session) serverError(c *pool.Conn, m wire.Message) (fatal bool) {
	f, err := wire.ParseError(m)
	if err != nil {
		return false
	}
	if roleChangeCode(string(f.Code)) && string(f.Code) != "57P01" {
		// 57P01 waits for ServerFailed: it may be one connection's end
		// (killed.go).
		s.db.serverTrouble(string(f.Code), c.Target().Gen)
	}
	sev := string(f.Severity)
	if sev == "FATAL" || sev == "PANIC" {
		s.mu.Lock()
		s.fatalReason = string(f.Message) + " (" + string(f.Code) + ")"
		s.fatalCode = string(f.Code)
		s.mu.Unlock()
		return true
	}
	return false
}

// roleChangeCode reports SQLSTATEs that mean the server is going away or no
// longer writable: admin_shutdown, crash_shutdown, cannot_connect_now,
// read_only_sql_transaction.
func roleChangeCode(code string) bool {
	switch code {
	case "57P01", "57P02", "57P03", "25006":
		return true
	}
	return false
}

// ServerFailed handles the loss of the bound server. The client gets an
// ErrorResponse (08006) for what it is waiting on; if it was inside a
// transaction or mid-batch, its next batch gets the error instead. Either
// way it stays connected for its next transaction.
func (s *Session) ServerFailed(c *pool.Conn, err error) {
	s.mu.Lock()
	if s.bnd.server != c {
		s.mu.Unlock()
		return
	}
	bound := s.fatalCode != "" // the FATAL came while this session had the connection
	if s.fatalCode == "" {
		// The server said it was going away before this session bound
		// it: nothing sent since was run.
		s.fatalCode = c.IdleFatal()
	}
	// alone: this connection died, its server goes on (killed.go).
	alone := sessionFatal(s.fatalCode)
	if s.fatalCode == "57P01" {
		// Terminated alone, or the server going away? Asked without mu
		// held: the client pump may need it meanwhile.
		s.mu.Unlock()
		alone = s.db.killedAlone(c.Target())
		s.mu.Lock()
		if s.bnd.server != c {
			s.mu.Unlock()
			return
		}
	}
	// A connection that died of its own timeout before the batch reached
	// it (in the pool, or idle_session_timeout firing as the batch was on
	// its way) ran nothing of it: the batch runs again, on another
	// connection.
	diedIdle := s.fatalCode == "57P05" || !bound && sessionFatal(s.fatalCode)
	if s.fatalCode != "" && (!(alone && bound) && s.refusedLocked(s.fatalCode) || diedIdle && s.rerunnableLocked()) {
		// The server refused the batch as it went away (or the
		// connection was dead before the batch reached it): run it
		// again, on the next primary unless the server goes on.
		s.retryCode, s.fatalCode, s.fatalReason = s.fatalCode, "", ""
		code := s.retryCode
		s.retryAtReadyLocked(c)
		s.mu.Unlock()
		s.flushClient()
		if !alone {
			s.db.serverTrouble(code, c.Target().Gen)
		}
		return
	}
	fatalCode := s.fatalCode
	s.fatalCode = ""
	owed, unsynced := s.bnd.pending, s.bnd.unsynced
	s.loseBindingLocked()
	inTx := s.tx == wire.TxActive || s.tx == wire.TxFailed
	s.tx = wire.TxIdle
	s.setPhaseLocked(phaseIdle)
	if s.closing {
		// The client has left (Terminate, or a failed read), or is being
		// ended: it is told nothing more. PostgreSQL sends nothing after
		// Terminate, and node-postgres takes an error arriving after its
		// Terminate for an unhandled one. (end closes a server
		// connection with an answer still due: a client that sends
		// Terminate as soon as it reads an ErrorResponse.)
		s.fatalReason = ""
		s.mu.Unlock()
		return
	}
	msg := "pauseproxy: server connection lost during the transaction"
	if s.fatalReason != "" {
		msg += ": " + s.fatalReason
		s.fatalReason = ""
	}
	if s.mode == config.PoolModeSession {
		// The client's session (its temporary tables, prepared
		// statements, SETs) died with the server connection: as
		// PostgreSQL, a FATAL and the end of the connection.
		code := "08006"
		if fatalCode != "" {
			code = fatalCode
		}
		s.closing = true
		s.sendLocked(true, wire.AppendError(nil, wire.SeverityFatal, code, msg), nil, nil)
		s.cc.Close()
		if !alone {
			s.db.serverTrouble("08006", c.Target().Gen)
		}
		return
	}
	e := wire.AppendError(nil, wire.SeverityError, "08006", msg)
	if unsynced > 0 || (owed == 0 && (inTx || s.mode == config.PoolModeSession)) {
		s.discard = true
		s.discardErr = e
	}
	var owedOut []byte
	if owed > 0 {
		owedOut = append(owedOut, e...)
		for ; owed > 0; owed-- {
			owedOut = wire.AppendReadyForQuery(owedOut, wire.TxIdle)
		}
	}
	// Always flush: the last messages forwarded may have been held back
	// because more was buffered (the FATAL that came right behind them).
	s.sendLocked(true, owedOut, nil, nil)
	if !alone {
		s.db.serverTrouble("08006", c.Target().Gen)
		s.r.log.Info("server connection lost under a client", slog.Uint64("client", s.ID), slog.Uint64("server", c.ID), slog.Any("err", err))
	} else {
		s.r.log.Info("server connection terminated under a client (the server goes on)", slog.Uint64("client", s.ID), slog.Uint64("server", c.ID))
	}
}
