package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// LISTEN/NOTIFY in transaction mode.
//
// A server connection that LISTENs keeps receiving notifications for as
// long as it lives, whoever has it bound; in transaction mode that would
// hand one client's notifications to another. So, per database and server
// login, one listener owns a dedicated server connection that LISTENs on
// the union of the channels its clients listen on:
//
//   - A client's LISTEN / UNLISTEN (simple or extended protocol, alone or
//     in a transaction) runs on its server connection as usual, so the
//     client gets PostgreSQL's own answer, errors and transaction
//     semantics. The proxy notes it (effects.go) and, when the
//     transaction commits, registers it with the listener before the
//     client gets its ReadyForQuery; a ROLLBACK drops it. The server
//     connection that ran the LISTEN keeps that subscription, so it is
//     closed at release instead of going back to the pool.
//   - Notifications that arrive on pooled server connections are dropped:
//     the listener's connection is the only source. Each NotificationResponse
//     it receives goes to every subscribed session: at once when the
//     client is idle, after its ReadyForQuery when it is inside a query or
//     transaction. A session keeps at most maxNotifyQueue bytes of
//     undelivered notifications; a client that does not read is
//     disconnected (54000) instead of growing the proxy's memory.
//   - The notifying process ID is the real backend's, so a driver cannot
//     recognise its own notifications by comparing with the process ID
//     the proxy gave it (README). pg_listening_channels() through the proxy
//     shows the server connection's channels, not the client's.
//   - When the listener's connection is lost (a role change, a restart),
//     it reconnects to the database's current target and LISTENs again;
//     notifications sent in the gap are lost, as for a PostgreSQL client
//     that reconnects. Subscribed clients get a NoticeResponse saying so,
//     and pauseproxy_listener_reconnects_total counts it.

// maxNotifyQueue bounds one session's undelivered notifications, in bytes.
const maxNotifyQueue = 1 << 20

// listenTimeout bounds how long a committing client waits for the
// listener's LISTEN.
const listenTimeout = 5 * time.Second

type listener struct {
	d    *Database
	name string // the server login, for logs
	dial pool.DialFunc

	mu      sync.Mutex // guards the fields below; never held while blocking on the network
	subs    map[string]map[*Session]struct{}
	bySess  map[*Session]map[string]struct{}
	conn    net.Conn      // nil while not connected
	gen     uint64        // target generation conn was dialed for
	waiters []chan error  // one per Query sent on conn, in order
	dialing chan struct{} // closed when the dial in progress ends
	closed  bool
}

// listenerFor returns the listener of a server login, creating it.
func (d *Database) listenerFor(user string) *listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l, ok := d.listeners[user]; ok {
		return l
	}
	if d.listeners == nil {
		d.listeners = make(map[string]*listener)
	}
	l := &listener{d: d, name: user, dial: d.dials[user],
		subs: make(map[string]map[*Session]struct{}), bySess: make(map[*Session]map[string]struct{})}
	d.listeners[user] = l
	return l
}

// applyListen registers a committed transaction's LISTEN/UNLISTEN actions
// with the session's listener, in order. A LISTEN that cannot be set up
// now stays registered (the listener keeps trying) and the client gets a
// warning. Called on the reader goroutine without mu.
func (s *Session) applyListen(acts []pendingFx) {
	l := s.db.listenerFor(s.loginUser)
	for _, a := range acts {
		var err error
		switch {
		case a.eff == effListen:
			err = l.subscribe(s, a.name)
		case a.name == "*":
			l.drop(s)
		default:
			l.unsubscribe(s, a.name)
		}
		if err != nil {
			s.r.log.Warn("LISTEN not set up on the listener connection yet", slog.Uint64("client", s.ID),
				slog.String("channel", a.name), slog.Any("err", err))
			s.send(false, wire.AppendNotice(nil, "WARNING", "01000",
				fmt.Sprintf("pauseproxy: LISTEN %s is registered but the listener connection is not ready (%v); notifications may be missed until it is", a.name, err)), nil, nil)
		}
	}
}

// subscribe adds s to channel ch, and waits for the listener's LISTEN on
// the server when ch is new.
func (l *listener) subscribe(s *Session, ch string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("database closed")
	}
	set, ok := l.subs[ch]
	if !ok {
		set = make(map[*Session]struct{})
		l.subs[ch] = set
	}
	set[s] = struct{}{}
	mine := l.bySess[s]
	if mine == nil {
		mine = make(map[string]struct{})
		l.bySess[s] = mine
	}
	mine[ch] = struct{}{}
	var wait chan error
	if !ok && l.conn != nil {
		wait = l.sendLocked("LISTEN " + quoteIdent(ch))
	}
	connected := l.conn != nil
	l.mu.Unlock()
	if !connected {
		// The new connection LISTENs on every channel, ch included.
		return l.connect()
	}
	return awaitListen(wait)
}

// awaitListen waits for the outcome of a LISTEN sent on the listener's
// connection (nil: nothing was sent), within listenTimeout.
func awaitListen(wait chan error) error {
	if wait == nil {
		return nil
	}
	select {
	case err := <-wait:
		return err
	case <-time.After(listenTimeout):
		return errors.New("the listener's LISTEN got no answer in time")
	}
}

// unsubscribe removes s from channel ch; the server stops listening when
// no session is left on it.
func (l *listener) unsubscribe(s *Session, ch string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(s, ch)
}

// drop removes s from every channel (UNLISTEN *, or the session's end).
func (l *listener) drop(s *Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.bySess[s] {
		l.removeLocked(s, ch)
	}
}

func (l *listener) removeLocked(s *Session, ch string) {
	if mine := l.bySess[s]; mine != nil {
		delete(mine, ch)
		if len(mine) == 0 {
			delete(l.bySess, s)
		}
	}
	set, ok := l.subs[ch]
	if !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(l.subs, ch)
		if l.conn != nil {
			l.sendLocked("UNLISTEN " + quoteIdent(ch))
		}
	}
}

// sendLocked writes a Query on the listener's connection and returns the
// channel its outcome arrives on. Called with mu held.
func (l *listener) sendLocked(sql string) chan error {
	ch := make(chan error, 1)
	l.conn.SetWriteDeadline(time.Now().Add(listenTimeout))
	if _, err := l.conn.Write(wire.AppendQuery(nil, sql)); err != nil {
		l.conn.Close() // the reader notices and reconnects
		ch <- err
		return ch
	}
	l.waiters = append(l.waiters, ch)
	return ch
}

// connect dials the listener's connection (one dial at a time), LISTENs on
// every channel, and starts its reader. It returns once the LISTENs are
// answered.
func (l *listener) connect() error {
	l.mu.Lock()
	if l.conn != nil {
		l.mu.Unlock()
		return nil
	}
	if l.dialing != nil {
		wait := l.dialing
		l.mu.Unlock()
		<-wait
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.conn == nil {
			return errors.New("listener connection failed")
		}
		return nil
	}
	done := make(chan struct{})
	l.dialing = done
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.dialing = nil
		l.mu.Unlock()
		close(done)
	}()
	if l.dial == nil {
		return errors.New("no server login to listen with")
	}
	t := l.d.Target()
	ctx, cancel := context.WithTimeout(context.Background(), listenTimeout)
	srv, err := l.dial(ctx, t)
	cancel()
	if err != nil {
		return fmt.Errorf("dial listener connection: %w", err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		srv.Conn.Close()
		return errors.New("database closed")
	}
	l.conn, l.gen = srv.Conn, t.Gen
	var wait chan error
	if len(l.subs) > 0 {
		var sql strings.Builder
		for ch := range l.subs {
			if sql.Len() > 0 {
				sql.WriteString("; ")
			}
			sql.WriteString("LISTEN " + quoteIdent(ch))
		}
		wait = l.sendLocked(sql.String())
	}
	l.mu.Unlock()
	go l.readLoop(srv.Conn)
	return awaitListen(wait)
}

// readLoop reads the listener's connection: notifications go to their
// subscribers, answers to the waiting senders. When the connection ends
// it reconnects while anyone listens.
func (l *listener) readLoop(c net.Conn) {
	rd := wire.NewReader(c, 1<<20)
	var failure error
	for {
		m, err := rd.ReadMessage()
		if err != nil {
			break
		}
		switch m.Type() {
		case wire.MsgNotification:
			l.deliver(m)
		case wire.MsgErrorResponse:
			f, _ := wire.ParseError(m)
			failure = fmt.Errorf("%s (SQLSTATE %s)", f.Message, f.Code)
			if string(f.Severity) == "FATAL" || string(f.Severity) == "PANIC" {
				c.Close()
			}
		case wire.MsgReadyForQuery:
			l.mu.Lock()
			if len(l.waiters) > 0 {
				l.waiters[0] <- failure
				l.waiters = l.waiters[1:]
			}
			l.mu.Unlock()
			failure = nil
		}
	}
	c.Close()
	l.mu.Lock()
	if l.conn == c {
		l.conn = nil
	}
	for _, w := range l.waiters {
		w <- errors.New("listener connection lost")
	}
	l.waiters = nil
	again := len(l.subs) > 0 && !l.closed
	l.mu.Unlock()
	if again {
		l.reconnect()
	}
}

// reconnect dials again, with a growing pause, until it succeeds, the
// database closes, or nobody listens any more; then it tells the
// subscribers that notifications may have been lost.
func (l *listener) reconnect() {
	l.d.stats.ListenerReconnects.Add(1)
	pause := 100 * time.Millisecond
	for {
		l.mu.Lock()
		stop := l.closed || len(l.subs) == 0
		l.mu.Unlock()
		if stop {
			return
		}
		err := l.connect()
		if err == nil {
			break
		}
		l.d.r.log.Info("listener connection: reconnecting", slog.String("database", l.d.Name), slog.Any("err", err))
		time.Sleep(pause)
		if pause < 2*time.Second {
			pause *= 2
		}
	}
	l.d.r.log.Info("listener connection re-established", slog.String("database", l.d.Name))
	notice := wire.AppendNotice(nil, "WARNING", "01000",
		"pauseproxy: the listener connection was re-established; notifications sent meanwhile may have been lost")
	l.mu.Lock()
	var sessions []*Session
	for s := range l.bySess {
		sessions = append(sessions, s)
	}
	l.mu.Unlock()
	for _, s := range sessions {
		s.notify(notice)
	}
}

// retarget moves the listener to the database's new target: its
// connection to the old one is closed and a new one LISTENs on every
// channel (the old reader then tells the subscribers of the gap).
func (l *listener) retarget(gen uint64) {
	l.mu.Lock()
	c := l.conn
	stale := c != nil && l.gen < gen
	if stale {
		l.conn = nil
	}
	l.mu.Unlock()
	if stale {
		c.Close()
		if err := l.connect(); err != nil {
			l.d.r.log.Info("listener connection: not yet on the new primary", slog.String("database", l.d.Name), slog.Any("err", err))
		}
	}
}

// close ends the listener for good.
func (l *listener) close() {
	l.mu.Lock()
	l.closed = true
	c := l.conn
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// deliver hands a NotificationResponse to the channel's subscribers.
func (l *listener) deliver(m wire.Message) {
	body := m.Body()
	if len(body) < 5 {
		return
	}
	end := indexZero(body, 4)
	if end < 0 {
		return
	}
	ch := string(body[4:end])
	l.mu.Lock()
	var to []*Session
	for s := range l.subs[ch] {
		to = append(to, s)
	}
	l.mu.Unlock()
	for _, s := range to {
		s.notify(m)
	}
}

// serverUser is the server login a client's pool uses: the database's
// forced user, or the client's own login.
func (d *Database) serverUser(login string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.User != "" {
		return d.cfg.User
	}
	return login
}

// retargetWait bounds how long a retarget waits for the listeners to
// LISTEN on the new target; past it they go on in the background.
const retargetWait = 2 * time.Second

// retargetListeners moves every listener to generation gen's target and
// waits (up to retargetWait) until they listen there.
func (d *Database) retargetListeners(gen uint64) {
	d.mu.Lock()
	ls := make([]*listener, 0, len(d.listeners))
	for _, l := range d.listeners {
		ls = append(ls, l)
	}
	d.mu.Unlock()
	if len(ls) == 0 {
		return
	}
	done := make(chan struct{}, len(ls))
	for _, l := range ls {
		go func() {
			l.retarget(gen)
			done <- struct{}{}
		}()
	}
	timeout := time.After(retargetWait)
	for range ls {
		select {
		case <-done:
		case <-timeout:
			return
		}
	}
}

// dropListening removes a session that ends from every listener.
func (d *Database) dropListening(s *Session) {
	d.mu.Lock()
	l := d.listeners[s.loginUser]
	d.mu.Unlock()
	if l != nil {
		l.drop(s)
	}
}

// closeListeners ends every listener (the database closes).
func (d *Database) closeListeners() {
	d.mu.Lock()
	ls := d.listeners
	d.listeners = nil
	d.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
}

// quoteIdent quotes a channel name as an SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// notify queues an asynchronous message (a NotificationResponse, a
// notice) for the client: written at once when the client is between
// transactions, else after its next ReadyForQuery.
func (s *Session) notify(m []byte) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if len(s.notifyQ)+len(m) > maxNotifyQueue {
		s.closing = true
		stuck := s.notifying // a write to the client is blocked: it does not read
		s.notifyQ = nil
		s.mu.Unlock()
		s.r.log.Warn("client does not read its notifications: disconnecting", slog.Uint64("client", s.ID),
			slog.Int("limit_bytes", maxNotifyQueue))
		if stuck {
			s.cc.Close()
		} else {
			s.fatalClient("54000",
				fmt.Sprintf("pauseproxy: too many undelivered notifications (more than %d bytes): the client does not read them", maxNotifyQueue))
		}
		return
	}
	s.notifyQ = append(s.notifyQ, m...)
	if s.bnd.server != nil || s.bnd.pending > 0 || s.phase != phaseIdle || s.notifying {
		s.mu.Unlock()
		return
	}
	s.notifying = true
	s.mu.Unlock()
	go s.writeNotifies()
}

// writeNotifies writes queued asynchronous messages to an idle client. A
// client that does not take them within a while is cut off.
func (s *Session) writeNotifies() {
	for {
		s.mu.Lock()
		if len(s.notifyQ) == 0 || s.bnd.server != nil || s.phase != phaseIdle || s.closing {
			s.notifying = false
			s.mu.Unlock()
			return
		}
		q := s.notifyQ
		s.notifyQ = nil
		if err := s.sendLocked(true, q, nil, nil); err != nil {
			s.cc.Close()
			s.mu.Lock()
			s.notifying = false
			s.mu.Unlock()
			return
		}
	}
}

// takeNotifiesLocked returns the queued asynchronous messages to write
// after a ReadyForQuery that ends a transaction. Called with mu held.
func (s *Session) takeNotifiesLocked() []byte {
	q := s.notifyQ
	s.notifyQ = nil
	return q
}
