package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Session is one logged-in client. Its Run goroutine (the client pump) owns
// reading from the client and writing to the bound server; the bound
// server's reader goroutine calls ServerMessage/ServerFailed, which write to
// the client.
//
// Lock order: mu before wmu. Nobody takes mu while holding wmu, and nobody
// holds mu while blocking on a socket.
type Session struct {
	ID     uint64
	User   string
	DBName string
	Key    CancelKey
	Addr   net.Addr
	Start  time.Time

	r    *Router
	db   *Database
	pool *pool.Pool
	mode config.PoolMode

	cc  net.Conn
	crd *wire.Reader
	cw  *clientWriter

	self      pool.Handler // s, for pool.Conn.Bind without allocating
	loginUser string       // the server login of s.pool

	want    []param // parameters the client expects on every server (mu)
	initial []param // want as it was at login: what RESET ALL goes back to
	wantVer uint64  // counts changes of want

	// wantKey identifies want's content for paramSync (params.go), as of
	// wantKeyVer. Guarded by mu.
	wantKey    unique.Handle[string]
	wantKeyVer uint64
	wantKeyOK  bool
	resync     bool   // want changed under a bound server: SET it before the next statement (mu)
	out        []byte // scratch for messages the client pump builds

	// Named statements (transaction mode with max_prepared_statements):
	// see stmts.go. tracking is fixed at login; the rest is guarded by mu.
	tracking   bool
	stmts      map[string]*stmtDef // client name -> statement
	unnamed    []byte              // the client's last Parse of the unnamed statement
	unnamedAt  uint64              // binding in which unnamed was last sent
	binding    uint64              // counts bindings
	answered   uint64              // counts ReadyForQuery from servers (mu)
	exps       expQueue
	rsynth     []byte    // scratch for the reader goroutine's owed answers
	rsynthPump []byte    // the same for the client pump
	repl       []byte    // a rewritten server message to send instead (mu)
	shapeCh    chan bool // the client pump waits here for a shape check (shape.go; mu)
	// boundDef is the named statement the last Bind bound to the portal
	// boundPortal (nil: none, or the unnamed one), so that a Describe of
	// that portal (pgjdbc's way to learn a statement's columns) records
	// the statement's shape. A Bind that failed, or a portal gone since,
	// gets no row description to record.
	boundDef    *stmtDef
	boundPortal []byte

	// Effects of client statements on recorded state (effects.go), guarded
	// by mu. unnamedEff is the effect of the unnamed statement, portalEff
	// of the unnamed portal.
	unnamedEff     effect
	unnamedEffName string
	unnamedRaw     string
	portalEff      effect
	portalEffName  string
	portalRaw      string
	fx             bool                // something below waits for the server's word
	wipeSaved      map[string]*stmtDef // client names dropped by a wipe the server has not confirmed
	sentFx         []pendingFx         // effects sent, not yet confirmed (effects_session.go)
	paramDone      []pendingFx         // confirmed resets, applied at the next ReadyForQuery
	txDone         []pendingFx         // confirmed SETs and LISTENs, applied when the transaction commits

	// Asynchronous messages for the client (listen.go), guarded by mu.
	notifyQ   []byte // undelivered NotificationResponses and notices
	notifying bool   // writeNotifies runs

	// Safe retry (retry.go), guarded by mu except responded.
	batch       []byte      // the client's messages of the current implicit transaction
	batchOK     bool        // batch may still be run again elsewhere
	batchDone   bool        // batch ended with its Query or Sync
	retryCode   string      // SQLSTATE that made the server refuse the batch
	responded   atomic.Bool // something of the batch's response was queued for the client
	completed   atomic.Bool // a statement of the batch completed (CommandComplete and the like)
	batchMark   writerMark  // the client writer's point when the batch began (mu, taken under wmu)
	queryTimer  *time.Timer // query_timeout of the batch in flight (mu)
	txTimer     *time.Timer // transaction_timeout of the transaction in flight (mu)
	txStart     time.Time   // when txTimer was armed (mu)
	retryArmed  bool        // the batch was refused; its ReadyForQuery ends the binding
	retryBuf    []byte      // the batch being run again (pmu)
	retries     int         // how often the current batch ran again
	inRetry     bool        // a batch is being run again (pmu)
	retryEnded  bool        // the retry ended the session (pmu)
	retryQueued atomic.Bool // a refused batch waits to run again (retry.go)
	fatalCode   string      // SQLSTATE of the FATAL the bound server sent before closing

	// sbuf holds client messages (and the proxy's own queries) not yet
	// sent to the bound server. It belongs to the session, never to the
	// server connection (see pool.Conn).
	sbuf []byte

	swallow atomic.Int32 // internal queries whose responses the client must not see

	// A client's CancelRequest must reach the client's statement, not the
	// proxy's own SETs ahead of it nor a server that has received nothing
	// yet (cancel.go): written says bytes of this binding reached the
	// server, cancelWanted that a cancel waits for that.
	written      atomic.Bool
	cancelWanted atomic.Bool

	mu  sync.Mutex // guards the fields below
	bnd binding    // the bound server connection's state (phase.go); zero when none is bound
	// lastStart is when the last binding began (SHOW CLIENTS'
	// request_time after it ended).
	lastStart time.Time
	tx        byte // transaction status of the last ReadyForQuery
	// discard drops client messages until the next Sync or Query, which
	// are then answered with discardErr and ReadyForQuery: the client's
	// batch or transaction failed on the proxy's side.
	discard         bool
	discardErr      []byte
	endAfterSwallow bool // session end: release once the reset query is answered
	closing         bool
	waitCtx         context.Context         // bind's wait; cancelled by the client's CancelRequest
	waitCancel      context.CancelCauseFunc // cancels waitCtx
	deadline        bool                    // a client read deadline is set (idleDeadlineLocked)
	fatalReason     string                  // message of a FATAL error the bound server sent before closing
	waitStart       time.Time
	queryStart      time.Time
	phase           phase // see phase.go; set only by setPhaseLocked

	wmu sync.Mutex // serializes writes to the client (cw)

	// pmu is held by whoever has the client pump's side of the session
	// (sbuf, out, writes to the bound server, the retry fields): the pump
	// whenever it is not blocked reading the client, and a retry
	// goroutine while it runs a refused batch again (retry.go). Taken
	// before mu.
	pmu    sync.Mutex
	runCtx context.Context // Run's, for the retry goroutine
}

// errClientCancel is the cause of a wait ended by the client's
// CancelRequest.
var errClientCancel = errors.New("canceled by the client's cancel request")

// testHookBeforeClientClose, set by tests only, runs in end between
// closing the server connection and the client's: a descheduled end lets
// the server's reader act first.
var testHookBeforeClientClose func()

// errClosing refuses a server to a session that is ending.
var errClosing = errors.New("the session is ending")

// errClientGone is the cause of a retry's wait ended because the client
// left.
var errClientGone = errors.New("the client left")

// CancelKey is the BackendKeyData the proxy gave a client.
type CancelKey struct{ PID, Secret uint32 }

// Run serves the client until it terminates, the connection breaks, or ctx
// (the proxy's hard stop) is done. It closes the client connection.
func (s *Session) Run(ctx context.Context) {
	s.runCtx = ctx
	s.pmu.Lock()
	defer func() {
		s.end()
		s.pmu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { s.cc.Close() })
	defer stop()
	var lastTyp byte // of the last client message
	for {
		var m wire.Message
		var err error
		if s.crd.HasMessage() {
			m, err = s.crd.ReadMessageHead(streamLimit, streamHead, streamable)
		} else {
			if len(s.sbuf) > 0 {
				s.flushServer()
			}
			// About to wait for the client: hand back a borrowed
			// read buffer (kept if a partial message is in it), except
			// inside a COPY from the client, whose next CopyData is on
			// its way and may need the large buffer again.
			if lastTyp != wire.MsgCopyData {
				s.crd.ReleaseBuffer()
			}
			s.beforeRead()
			// Blocked on the client, the pump lends its side of the
			// session to a retry (retry.go), which runs while the pump
			// still sees the client leave, and takes it back after.
			s.pmu.Unlock()
			m, err = s.crd.ReadMessageHead(streamLimit, streamHead, streamable)
			if err != nil {
				s.clientGone()
			}
			s.pmu.Lock()
			if s.retryEnded || err == nil && !s.runQueuedRetry() {
				return
			}
		}
		if err != nil {
			s.readFailed(err)
			return
		}
		s.db.stats.Received.Add(int64(len(m)))
		lastTyp = m.Type()
		if lastTyp == wire.MsgTerminate {
			return
		}
		if !wire.SessionMessage(lastTyp) {
			// What PostgreSQL answers, before any server hears of it.
			s.fatalClient("08P01", fmt.Sprintf("invalid frontend message type %d", lastTyp))
			return
		}
		if !s.handle(ctx, m) {
			return
		}
		if s.crd.Remaining() > 0 && !s.dropRest() {
			// The rest of a streamed message that went nowhere (a failed
			// batch): read and dropped, to stay in step with the client.
			return
		}
	}
}

// rest is how much of the message being handled is still to be read from
// the client (a streamed message, stream.go): none for a message a retry
// runs again, which is whole in the batch, so that a retry never touches
// the client reader the blocked pump owns (pmu).
func (s *Session) rest() int {
	if s.inRetry {
		return 0
	}
	return s.crd.Remaining()
}

// handle routes one client message. It returns false when the session must
// end.
func (s *Session) handle(ctx context.Context, m wire.Message) bool {
	typ := m.Type()
	s.mu.Lock()
	if s.discard {
		s.discardLocked(typ)
		return true
	}
	srv := s.bnd.server
	if srv == nil {
		s.mu.Unlock()
		switch typ {
		case wire.MsgCopyData, wire.MsgCopyDone, wire.MsgCopyFail:
			// Left over from a COPY that ended with an error: PostgreSQL
			// drops these outside COPY mode too (docs 55.2.6).
			return true
		case wire.MsgFlush:
			s.flushClient()
			return true
		case wire.MsgSync:
			// Nothing outstanding: answer as the server would.
			s.writeClient(wire.AppendReadyForQuery(s.out[:0], wire.TxIdle))
			return true
		}
		if s.tracking && s.answerUnbound(m) {
			return true
		}
		if s.r.draining.Load() {
			s.terminate()
			return false
		}
		var err error
		srv, err = s.bind(ctx, m)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errClosing) {
				return false
			}
			s.failBatch(typ, err)
			return true
		}
		// A fresh binding has nothing outstanding, so it cannot be
		// released before the counters below record this message.
		s.mu.Lock()
		if s.bnd.server != srv {
			// Lost already: handle the message in the new state.
			s.mu.Unlock()
			return s.handle(ctx, m)
		}
	}
	if s.resync && s.bnd.pending == 0 && s.swallow.Load() == 0 {
		// A RESET sent the client's parameters back to its startup
		// values: SET them before anything else runs.
		s.resync = false
		if q := paramSync(s.out[:0], srv, s); len(q) > 0 {
			s.swallow.Add(1)
			s.queue(srv, q)
			if s.tx != wire.TxIdle {
				// Inside a transaction that may yet roll back.
				stateOf(srv).carriedUnknown = true
			}
		}
	}
	if s.mode == config.PoolModeSession && s.bnd.pending == 0 && s.bnd.unsynced == 0 && s.tx == wire.TxIdle {
		// The first message after an idle ReadyForQuery starts a
		// transaction, explicit or implicit (transaction mode arms at
		// bind).
		s.armTxTimeoutLocked()
	}
	// The check above and the counting below are one critical section:
	// once this message is counted, the reader cannot release srv.
	switch typ {
	case wire.MsgQuery, wire.MsgFunctionCall:
		s.bnd.pending++
		s.bnd.unsynced = 0
		s.bnd.sinceExe = 0
		s.armQueryTimeoutLocked()
	case wire.MsgSync:
		s.bnd.pending++
		s.armQueryTimeoutLocked()
		s.bnd.unsynced = 0
		s.bnd.sinceExe++
	case wire.MsgExecute:
		s.bnd.unsynced++
		s.bnd.sinceExe = 0
	case wire.MsgCopyDone, wire.MsgCopyFail:
		// A server in COPY IN ignores Sync until CopyDone/CopyFail (docs
		// 55.2.6), so Syncs sent since the COPY started get no
		// ReadyForQuery of their own.
		if s.bnd.copyIn {
			s.bnd.pending -= s.bnd.sinceExe
			if s.tracking {
				s.exps.dropSyncs(s.bnd.sinceExe)
			}
			s.bnd.sinceExe = 0
		}
	case wire.MsgCopyData:
	default:
		s.bnd.unsynced++
	}
	if s.rest() > 0 {
		// Streamed (stream.go): too big to keep for a retry.
		s.batchOK = false
	}
	if s.batchOK {
		s.capture(m)
	}
	if s.tracking && (typ == wire.MsgBind || typ == wire.MsgDescribe) {
		if name, ok := namedStatement(m); ok && !s.checkShape(ctx, srv, name) {
			// The binding was lost while the check waited.
			s.mu.Unlock()
			return s.handle(ctx, m)
		}
	}
	out := []byte(m)
	if !s.tracking {
		switch typ {
		case wire.MsgQuery, wire.MsgParse, wire.MsgBind, wire.MsgExecute:
			if s.rest() == 0 {
				s.observe(srv, m)
			}
		}
	} else {
		var due bool
		out, due = s.track(srv, m)
		if len(out) > 0 && &out[0] != &m[0] {
			// Built in the scratch buffer: keep it grown, so the next
			// rewrite does not allocate.
			s.out = out[:0]
		}
		if due {
			if synth := s.emitSynthLocked(s.rsynthPump[:0]); len(synth) > 0 {
				s.responded.Store(true)
				s.sendLocked(false, synth, nil, nil)
				s.mu.Lock()
			}
		}
	}
	s.mu.Unlock()
	if out != nil {
		s.queue(srv, out)
	}
	if s.rest() > 0 {
		return s.streamRest(srv)
	}
	if typ == wire.MsgFlush {
		// The client waits for what is owed so far, some of which the
		// proxy may have answered itself.
		s.flushClient()
	}
	return true
}

// maxQueued is how much the client pump gathers before writing to the
// server even though the client has more to read; bigger messages go out
// unbuffered.
const maxQueued = 32 << 10

// queue buffers b for the bound server srv, writing out when the buffer
// is full.
func (s *Session) queue(srv *pool.Conn, b []byte) {
	if len(s.sbuf)+len(b) > maxQueued {
		if len(s.sbuf) > 0 {
			srv.Write(s.sbuf)
			s.sbuf = s.sbuf[:0]
			s.wrote(srv)
		}
		if len(b) > maxQueued {
			srv.Write(b)
			s.wrote(srv)
			return
		}
	}
	s.sbuf = append(s.sbuf, b...)
}

// bind acquires a server connection for the next transaction (waiting in a
// hold if the database is paused), attaches the session to it and queues
// the SET statements its parameters need.
func (s *Session) bind(ctx context.Context, m wire.Message) (*pool.Conn, error) {
	p := s.txPool(m) // the session's pool, or a replica's for a read-only transaction (reads_session.go)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errClosing
	}
	s.setPhaseLocked(phaseWaiting)
	if s.waitCtx == nil || s.waitCtx.Err() != nil {
		// Made once per session (and again after a cancel): a client's
		// CancelRequest ends the wait (Router.Cancel).
		if s.waitCancel != nil {
			s.waitCancel(nil)
		}
		s.waitCtx, s.waitCancel = context.WithCancelCause(ctx)
	}
	wctx := s.waitCtx
	s.mu.Unlock()
	for {
		c, err := s.db.acquire(wctx, p)
		if err != nil {
			s.mu.Lock()
			s.setPhaseLocked(phaseIdle)
			s.mu.Unlock()
			if errors.Is(context.Cause(wctx), errClientCancel) && ctx.Err() == nil {
				// Nothing of the statement ran: PostgreSQL's answer to
				// a cancel, and the statement is never sent.
				return nil, &pool.Error{Code: "57014", Msg: "canceling statement due to user request"}
			}
			return nil, err
		}
		s.mu.Lock()
		if errors.Is(context.Cause(wctx), errClientCancel) {
			// The cancel came as the wait ended: the statement is not
			// sent, as if the wait had ended first.
			s.setPhaseLocked(phaseIdle)
			s.mu.Unlock()
			s.pool.Put(c)
			return nil, &pool.Error{Code: "57014", Msg: "canceling statement due to user request"}
		}
		s.written.Store(false)
		s.cancelWanted.Store(false)
		now := time.Now()
		s.attachLocked(c, now)
		s.binding++
		s.resetBatch()
		waited := now.Sub(s.waitStart)
		s.setPhaseLocked(phaseActive)
		if s.mode == config.PoolModeTransaction {
			s.armTxTimeoutLocked()
		}
		s.mu.Unlock()
		if !c.Bind(&s.self) {
			s.mu.Lock()
			s.detachLocked()
			s.mu.Unlock()
			p.Put(c)
			continue
		}
		s.db.stats.waited(waited)
		s.mu.Lock()
		s.resync = false
		q := paramSync(s.out[:0], c, s)
		s.mu.Unlock()
		if len(q) > 0 {
			s.swallow.Add(1)
			s.queue(c, q)
		}
		return c, nil
	}
}

// flushServer sends the queued messages. Queued bytes keep the binding
// (their answers are still due), so the bound server is the one they were
// queued for.
func (s *Session) flushServer() {
	s.mu.Lock()
	srv := s.bnd.server
	s.mu.Unlock()
	if srv != nil {
		srv.Write(s.sbuf)
		s.wrote(srv)
	}
	s.sbuf = s.sbuf[:0]
}

// beforeRead sets the deadline of the next client read (see
// idleDeadlineLocked).
func (s *Session) beforeRead() {
	s.mu.Lock()
	s.idleDeadlineLocked()
	s.mu.Unlock()
}

// clientGone runs when the client read failed: a retry waiting for a
// primary on the pump's behalf stops waiting, so the pump can end the
// session now rather than at hold_timeout.
func (s *Session) clientGone() {
	s.mu.Lock()
	s.closing = true
	if (s.phase == phaseRetrying || s.phase == phaseWaiting) && s.waitCancel != nil {
		// The pump is not waiting itself: the wait is a retry's.
		s.waitCancel(errClientGone)
	}
	s.mu.Unlock()
}

func (s *Session) readFailed(err error) {
	var fe *wire.FrameError
	switch {
	case errors.Is(err, wire.ErrBudgetExhausted):
		s.r.log.Warn("large message refused: large_message_budget exhausted", slog.Uint64("client", s.ID), slog.Any("err", err))
		s.writeClient(wire.AppendError(s.out[:0], wire.SeverityFatal, "53200", "pauseproxy: out of memory for large messages (large_message_budget): "+err.Error()))
	case errors.As(err, &fe):
		s.r.log.Warn("client sent a bad message", slog.Uint64("client", s.ID), slog.Any("err", err))
		s.writeClient(wire.AppendError(s.out[:0], wire.SeverityFatal, "08P01", "pauseproxy: invalid message from client: "+fe.Error()))
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.mu.Lock()
		inTx := s.bnd.server != nil && (s.tx == wire.TxActive || s.tx == wire.TxFailed)
		s.mu.Unlock()
		if inTx {
			s.writeClient(wire.AppendError(s.out[:0], wire.SeverityFatal, "25P03", "pauseproxy: idle transaction timeout (idle_transaction_timeout)"))
		} else {
			s.writeClient(wire.AppendError(s.out[:0], wire.SeverityFatal, "57P05", "pauseproxy: client idle timeout (client_idle_timeout)"))
		}
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		s.r.log.Debug("client read failed", slog.Uint64("client", s.ID), slog.Any("err", err))
	}
}

// failBatch answers the message that could not get a server: a Query at
// once, an extended-protocol batch when its Sync arrives.
func (s *Session) failBatch(typ byte, err error) {
	code, msg := "08006", err.Error()
	var pe *pool.Error
	if errors.As(err, &pe) {
		code, msg = pe.Code, pe.Msg
	}
	e := wire.AppendError(nil, wire.SeverityError, code, msg)
	s.mu.Lock()
	s.discard = true
	s.discardErr = e
	s.discardLocked(typ)
}

// discardLocked drops a message of a failed batch; a Query or Sync ends the
// batch with the stored error and ReadyForQuery. Called with mu held; it
// releases mu.
func (s *Session) discardLocked(typ byte) {
	if typ != wire.MsgQuery && typ != wire.MsgSync && typ != wire.MsgFunctionCall {
		s.mu.Unlock()
		return
	}
	e := s.discardErr
	s.discard = false
	s.discardErr = nil
	s.sendLocked(true, e, wire.AppendReadyForQuery(nil, wire.TxIdle), nil)
}

// end runs when the client is gone: a server still bound is reset and
// released (session mode, idle) or closed (anything in flight).
func (s *Session) end() {
	s.mu.Lock()
	s.closing = true
	s.stopTxTimeoutLocked()
	if s.waitCancel != nil {
		s.waitCancel(nil)
	}
	srv := s.bnd.server
	clean := srv != nil && s.bnd.pending == 0 && s.bnd.unsynced == 0 && s.tx == wire.TxIdle && !s.bnd.copyIn
	reset := s.r.cfg().ServerResetQuery
	if srv != nil && clean && reset != "" && s.swallow.Load() == 0 {
		// The reset query (DISCARD ALL) drops the server's statements
		// and takes its parameters back to the connection's defaults.
		cs := stateOf(srv)
		cs.stmts.clear()
		cs.carriedUnknown = true
		s.endAfterSwallow = true
		s.swallow.Add(1)
		s.mu.Unlock()
		srv.Write(append(s.sbuf, wire.AppendQuery(s.out[:0], reset)...))
	} else if srv != nil && clean && reset == "" && s.swallow.Load() == 0 {
		s.detachLocked()
		s.mu.Unlock()
		// No reader callback will come: hand it back ourselves.
		if srv.Unbind(&s.self) {
			s.pool.Put(srv)
		}
	} else {
		s.mu.Unlock()
		if srv != nil {
			srv.Retire()
			srv.Kill()
		}
	}
	if testHookBeforeClientClose != nil {
		testHookBeforeClientClose()
	}
	s.cc.Close()
	if s.mode == config.PoolModeTransaction {
		s.db.dropListening(s)
	}
	s.r.removeSession(s)
}
