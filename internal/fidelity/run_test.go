package fidelity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/router"
)

// expectTimeout bounds one Expect step: a reply that never comes is a
// failure with the transcript so far, not a hung test.
const expectTimeout = 10 * time.Second

// defaultConn names the connection of steps before any Conn line.
const defaultConn = "main"

// target is where a run connects: PostgreSQL itself or a proxy.
type target struct {
	dsn string
	// rot, for a proxy in transaction mode, moves each new transaction to
	// another server connection (see rotator).
	rot *rotator
}

// run is one execution of a script against one target. It owns its
// connections; the transcript it builds is what gets compared.
type run struct {
	ctx   context.Context
	tgt   target
	conns map[string]*conn
	order []string // connection names in the order they were opened
	cur   *conn
	multi bool // more than one connection: prefix lines with its name
	lines []string
}

// conn is one authenticated client connection driven message by message.
// It keeps the same accounting as the proxy's session to know whether the
// proxy may have released its server connection (see bound).
type conn struct {
	name     string
	raw      net.Conn
	fe       *pgproto3.Frontend
	pending  int  // Query/Sync sent whose ReadyForQuery has not arrived
	unsynced int  // messages sent since the last Query/Sync
	sinceExe int  // Syncs sent since the last Execute/Query
	copyIn   bool // CopyInResponse arrived since the last ReadyForQuery
	status   byte // of the last ReadyForQuery
	buffered bool // messages sent to fe but not yet written to raw
}

// bound reports whether the connection is inside a transaction or has
// something outstanding, so that in transaction mode the proxy still holds
// a server connection for it.
func (c *conn) bound() bool {
	return c.pending > 0 || c.unsynced > 0 || c.status != 'I'
}

// runScript runs s against tgt and returns its transcript: every message
// sent ("->" and the script line) and received ("<-" and describe). On
// error the transcript so far is returned with it.
func runScript(ctx context.Context, s *script, tgt target) (lines []string, err error) {
	r := &run{ctx: ctx, tgt: tgt, conns: make(map[string]*conn)}
	names := map[string]bool{}
	if s.steps[0].conn == "" {
		names[defaultConn] = true
	}
	for _, st := range s.steps {
		if st.conn != "" {
			names[st.conn] = true
		}
	}
	r.multi = len(names) > 1
	defer r.close()
	for _, st := range s.steps {
		if err := r.step(st); err != nil {
			return r.lines, fmt.Errorf("line %d (%s): %w", st.line, st.text, err)
		}
	}
	if err := r.finish(); err != nil {
		return r.lines, err
	}
	return r.lines, nil
}

func (r *run) step(st step) error {
	switch {
	case st.conn != "":
		return r.use(st.conn)
	case st.send != nil:
		if r.cur == nil {
			if err := r.use(defaultConn); err != nil {
				return err
			}
		}
		return r.send(r.cur, st.text, st.send)
	default:
		if r.cur == nil {
			if err := r.use(defaultConn); err != nil {
				return err
			}
		}
		return r.expect(r.cur, st.expect, st.count)
	}
}

// use makes name the current connection, opening it on first use. The
// previous connection's queued messages are written first, so that a
// script can act on one connection and then observe on another.
func (r *run) use(name string) error {
	if r.cur != nil {
		if err := r.flush(r.cur); err != nil {
			return err
		}
	}
	if c, ok := r.conns[name]; ok {
		r.cur = c
		return nil
	}
	pc, err := pgconn.Connect(r.ctx, r.tgt.dsn)
	if err != nil {
		return fmt.Errorf("connect %s: %w", name, err)
	}
	hj, err := hijack(r.ctx, pc)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	c := &conn{name: name, raw: hj.Conn, fe: hj.Frontend, status: hj.TxStatus}
	r.conns[name] = c
	r.order = append(r.order, name)
	r.cur = c
	return nil
}

// hijack takes over a logged-in connection. SyncConn first: a login
// write that took over 15ms leaves pgconn's background reader blocked on
// the socket, where it would take the server's next reply (pgconn's
// SyncConn and Hijack docs).
func hijack(ctx context.Context, pc *pgconn.PgConn) (*pgconn.HijackedConn, error) {
	err := pc.SyncConn(ctx)
	var hj *pgconn.HijackedConn
	if err == nil {
		hj, err = pc.Hijack()
	}
	if err != nil {
		pc.Close(ctx)
		return nil, fmt.Errorf("take over the connection: %w", err)
	}
	return hj, nil
}

// send queues msg on c, keeping the proxy's accounting (see
// router.Session.handle). In transaction mode, the first message of a new
// transaction is preceded by a rotation.
func (r *run) send(c *conn, text string, msg pgproto3.FrontendMessage) error {
	if r.tgt.rot != nil && !c.bound() && !c.buffered {
		err := r.tgt.rot.rotate(r.ctx, r.boundCount())
		var stuck *stuckError
		switch {
		case errors.As(err, &stuck):
			// Worth a line in the diff, and the rest of the exchange is
			// still worth seeing: go on without rotating.
			r.record(c, "!! "+stuck.Error()+"; no more rotation in this run")
			r.tgt.rot = nil
		case err != nil:
			return err
		}
	}
	r.record(c, "-> "+text)
	c.fe.Send(msg)
	c.buffered = true
	switch msg.(type) {
	case *pgproto3.Query:
		c.pending++
		c.unsynced, c.sinceExe = 0, 0
	case *pgproto3.Sync:
		c.pending++
		c.unsynced = 0
		c.sinceExe++
	case *pgproto3.Execute:
		c.unsynced++
		c.sinceExe = 0
	case *pgproto3.CopyDone, *pgproto3.CopyFail:
		// A server in COPY IN ignores Sync (PostgreSQL docs 55.2.6), so
		// the Syncs sent since the Execute that started it get no
		// ReadyForQuery.
		if c.copyIn {
			c.pending -= c.sinceExe
			c.sinceExe = 0
		}
	case *pgproto3.CopyData:
	default:
		c.unsynced++
	}
	return nil
}

func (r *run) boundCount() int {
	n := 0
	for _, c := range r.conns {
		if c.bound() {
			n++
		}
	}
	return n
}

func (r *run) flush(c *conn) error {
	if !c.buffered {
		return nil
	}
	c.buffered = false
	if err := c.fe.Flush(); err != nil {
		return fmt.Errorf("write to %s: %w", c.name, err)
	}
	return nil
}

// expect writes what is queued on c and reads until count messages of
// type want have arrived, recording every message.
func (r *run) expect(c *conn, want string, count int) error {
	if err := r.flush(c); err != nil {
		return err
	}
	c.raw.SetReadDeadline(time.Now().Add(expectTimeout))
	defer c.raw.SetReadDeadline(time.Time{})
	for seen := 0; seen < count; {
		msg, err := c.fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("no %s after %s (%d of %d seen)", want, expectTimeout, seen, count)
			}
			return fmt.Errorf("read from %s: %w", c.name, err)
		}
		r.record(c, "<- "+describe(msg))
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			c.pending--
			c.status = m.TxStatus
			c.copyIn = false
		case *pgproto3.CopyInResponse:
			c.copyIn = true
		}
		if typeName(msg) == want {
			seen++
		}
	}
	return nil
}

// finish ends every connection with a Sync and its ReadyForQuery, so that
// a message the script did not wait for (a stray reply, a late error)
// still shows up in the transcript.
func (r *run) finish() error {
	for _, name := range r.order {
		c := r.conns[name]
		if err := r.send(c, "Sync (end of script)", &pgproto3.Sync{}); err != nil {
			return err
		}
		if err := r.expect(c, "ReadyForQuery", 1); err != nil {
			return fmt.Errorf("end of script on %s: %w", name, err)
		}
	}
	return nil
}

func (r *run) record(c *conn, line string) {
	if r.multi {
		line = c.name + " " + line
	}
	r.lines = append(r.lines, line)
}

func (r *run) close() {
	for _, c := range r.conns {
		c.fe.Send(&pgproto3.Terminate{})
		c.fe.Flush()
		c.raw.Close()
	}
}

// rotator makes consecutive transactions of a script land on different
// server connections in transaction mode, where otherwise a lone client
// would get the same one back every time (the pool hands out the most
// recently used idle connection). It uses one extra client, the blocker,
// that alternately opens a transaction, taking the server connection the
// script has just released, and commits it, releasing an older server
// connection on top of the idle list. Either way the script's next
// transaction gets a server connection other than its last one, as it
// would with a busy pool.
type rotator struct {
	db      *router.Database
	blocker *pgconn.PgConn
	held    bool
}

// rotate runs one alternation; bound is how many of the script's
// connections are inside a transaction (each holds a server connection).
func (r *rotator) rotate(ctx context.Context, bound int) error {
	if err := r.waitActive(bound); err != nil {
		return err
	}
	sql := "BEGIN"
	if r.held {
		sql = "COMMIT"
	}
	ectx, cancel := context.WithTimeout(ctx, expectTimeout)
	defer cancel()
	if _, err := r.blocker.Exec(ectx, sql).ReadAll(); err != nil {
		return fmt.Errorf("rotation (%s on the blocker; pools %s): %w", sql, r.poolStats(), err)
	}
	r.held = !r.held
	return r.waitActive(bound)
}

// waitActive waits until the proxy's count of bound server connections is
// the script's plus the blocker's: the proxy puts a released server
// connection back in the pool just after it forwards ReadyForQuery.
func (r *rotator) waitActive(bound int) error {
	want := bound
	if r.held {
		want++
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := r.db.Active()
		if n == want {
			return nil
		}
		if time.Now().After(deadline) {
			return &stuckError{have: n, want: want}
		}
		time.Sleep(time.Millisecond)
	}
}

// poolStats describes the proxy's pools, for errors.
func (r *rotator) poolStats() string {
	var b strings.Builder
	for name, p := range r.db.Pools() {
		st := p.Stats()
		fmt.Fprintf(&b, "%s: active=%d idle=%d dialing=%d waiting=%d total=%d held=%v; ",
			name, st.Active, st.Idle, st.Dialing, st.Waiting, st.Total, st.Held)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// stuckError is a rotation that found the proxy holding another number of
// server connections than the script's state implies, typically one kept
// bound after a ReadyForQuery 'I' that ended everything outstanding.
type stuckError struct{ have, want int }

func (e *stuckError) Error() string {
	return fmt.Sprintf("harness: the proxy has %d server connections bound, want %d", e.have, e.want)
}
