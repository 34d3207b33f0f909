package admin

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/router"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Options configure a Console. Router and Pauser are required.
type Options struct {
	Router *router.Router
	Pauser *Pauser
	// Events is the event log SHOW EVENTS reads and commands write to;
	// nil records nothing.
	Events *Events
	// Control runs RELOAD, SET and SHUTDOWN; nil refuses them.
	Control Control
	// Topology feeds SHOW TOPOLOGY; nil shows each database's static
	// target.
	Topology Topology
	// Switchover runs SWITCHOVER; nil answers that it is not available.
	Switchover Switchover
	// Clients counts the connected clients, logged in or logging in
	// (proxy.Server.Clients), for SHOW LISTS; nil counts logged-in ones.
	Clients func() int64
	// Version is pauseproxy's version, for SHOW VERSION.
	Version string
	// StatsPeriod is the window of the averages of SHOW STATS (PgBouncer's
	// stats_period); 0 means 60s.
	StatsPeriod time.Duration
	Log         *slog.Logger
}

// Console serves the admin console: the virtual database "pgbouncer"
// (alias "pauseproxy") that proxy.Server hands authenticated clients to.
// It implements proxy.AdminConsole. Safe for concurrent use; each client
// runs on the goroutine that calls Serve.
type Console struct {
	o     Options
	ids   atomic.Uint64
	stats statsWindow
	// totalsWindow is SHOW TOTALS' window over the sums.
	totalsWindow statsWindow
	// errors counts the ErrorResponses console clients got (ClientErrors).
	errors router.ErrorCounts

	mu    sync.Mutex // guards conns
	conns map[uint64]*consoleConn
}

// consoleConn is one connected console client, for SHOW CLIENTS.
type consoleConn struct {
	id     uint64
	user   string
	remote net.Addr
	local  net.Addr
	start  time.Time
	// lastRequest is when the last Query arrived (UnixNano).
	lastRequest atomic.Int64
}

// New returns a console.
func New(o Options) *Console {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.StatsPeriod <= 0 {
		o.StatsPeriod = 60 * time.Second
	}
	return &Console{o: o, conns: make(map[uint64]*consoleConn), stats: statsWindow{period: o.StatsPeriod},
		totalsWindow: statsWindow{period: o.StatsPeriod}}
}

// access is what a console user may do.
type access int

const (
	noAccess    access = iota
	statsAccess        // SHOW commands (stats_users)
	adminAccess        // everything (admin_users)
)

// accessOf looks user up in the configuration in force, so that a RELOAD
// or SET changing admin_users applies to connected consoles too.
func (c *Console) accessOf(user string) access {
	px := &c.o.Router.Config().Proxy
	switch {
	case slices.Contains(px.AdminUsers, user):
		return adminAccess
	case slices.Contains(px.StatsUsers, user):
		return statsAccess
	}
	return noAccess
}

// Serve runs one console client until it leaves or ctx (the proxy's hard
// stop) ends. It owns conn and closes it. user has been authenticated by
// the proxy; the console admits admin_users and stats_users only, as
// PgBouncer does, whatever the auth_type.
func (c *Console) Serve(ctx context.Context, conn net.Conn, rd *wire.Reader, user string) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	w := bufio.NewWriter(conn)
	if c.accessOf(user) == noAccess {
		// PgBouncer answers "not allowed"; 42501 is insufficient_privilege.
		c.o.Log.Info("admin console login refused", slog.String("user", user), slog.String("addr", conn.RemoteAddr().String()))
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.errors.Add("42501")
		conn.Write(wire.AppendError(nil, wire.SeverityFatal, "42501",
			fmt.Sprintf("not allowed: user %q is in neither admin_users nor stats_users", user)))
		return
	}
	cc := &consoleConn{id: c.ids.Add(1), user: user, remote: conn.RemoteAddr(), local: conn.LocalAddr(), start: time.Now()}
	cc.lastRequest.Store(cc.start.UnixNano())
	c.mu.Lock()
	c.conns[cc.id] = cc
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.conns, cc.id)
		c.mu.Unlock()
	}()

	w.Write(c.welcome())
	if w.Flush() != nil {
		return
	}
	// failed is set while an extended-protocol batch is being refused:
	// messages are dropped until its Sync, as PostgreSQL does after an
	// error (protocol docs 55.2.3).
	failed := false
	for {
		m, err := rd.ReadMessage()
		if err != nil {
			var fe *wire.FrameError
			if errors.As(err, &fe) {
				c.errors.Add("08P01")
				w.Write(wire.AppendError(nil, wire.SeverityFatal, "08P01", "invalid message: "+fe.Error()))
				w.Flush()
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				c.o.Log.Debug("admin console read failed", slog.Any("err", err))
			}
			return
		}
		var r reply
		switch m.Type() {
		case wire.MsgQuery:
			if failed {
				continue
			}
			cc.lastRequest.Store(time.Now().UnixNano())
			q, _, _ := strings.Cut(string(m.Body()), "\x00")
			c.query(ctx, cc, q, &r)
			r.ready()
		case wire.MsgTerminate:
			return
		case wire.MsgSync:
			failed = false
			r.ready()
		case wire.MsgParse, wire.MsgBind, wire.MsgDescribe, wire.MsgExecute, wire.MsgClose, wire.MsgFlush:
			if !failed {
				failed = true
				r.fail(errorf("0A000", "the admin console speaks the simple query protocol only; the extended query protocol is not supported (use psql, or your driver's simple protocol mode)"))
			}
		case wire.MsgFunctionCall:
			r.fail(errorf("0A000", "function calls are not supported by the admin console"))
			r.ready()
		default:
			c.errors.Add("08P01")
			w.Write(wire.AppendError(nil, wire.SeverityFatal, "08P01", fmt.Sprintf("unsupported message type %q for the admin console", m.Type())))
			w.Flush()
			return
		}
		w.Write(r.buf)
		for _, code := range r.codes {
			c.errors.Add(code)
		}
		err = w.Flush()
		for _, f := range r.after {
			f()
		}
		if err != nil {
			return
		}
	}
}

// welcome is what follows authentication: AuthenticationOk, the parameters
// PgBouncer's console reports, BackendKeyData (a cancel request for it is
// dropped: console commands are not cancellable) and ReadyForQuery.
func (c *Console) welcome() []byte {
	out := []byte{wire.MsgAuthentication, 0, 0, 0, 8, 0, 0, 0, 0}
	for _, p := range [][2]string{
		{"server_version", c.o.Version + "/pauseproxy"},
		{"client_encoding", "UTF8"},
		{"server_encoding", "UTF8"},
		{"DateStyle", "ISO"},
		{"TimeZone", "GMT"},
		{"standard_conforming_strings", "on"},
		{"is_superuser", "on"},
	} {
		out = wire.AppendParameterStatus(out, p[0], p[1])
	}
	var key [8]byte
	rand.Read(key[:])
	out = append(out, wire.MsgBackendKeyData, 0, 0, 0, 12)
	out = append(out, key[:]...)
	out[len(out)-8] &= 0x7f // a positive process ID
	return wire.AppendReadyForQuery(out, wire.TxIdle)
}

// query runs the statements of one Query. The first error ends it, as in
// PostgreSQL's simple query protocol.
func (c *Console) query(ctx context.Context, cc *consoleConn, q string, r *reply) {
	stmts := splitStatements(q)
	if len(stmts) == 0 {
		r.empty()
		return
	}
	for _, st := range stmts {
		if err := c.exec(ctx, cc, st, r); err != nil {
			r.fail(err)
			return
		}
	}
}

// command is one console command.
type command struct {
	// stats: stats_users may run it (SHOW); the others need admin_users.
	stats bool
	run   func(c *Console, ctx context.Context, cc *consoleConn, args []token, r *reply) error
}

// commands maps a command word (upper case) to its implementation. SELECT
// is SHOW's alias, as in PgBouncer.
var commands map[string]command

func init() {
	commands = map[string]command{
		"SHOW":        {stats: true, run: (*Console).show},
		"SELECT":      {stats: true, run: (*Console).show},
		"SET":         {stats: true, run: (*Console).set}, // checks admin itself
		"PAUSE":       {run: (*Console).pause},
		"RESUME":      {run: (*Console).resume},
		"RECONNECT":   {run: (*Console).reconnect},
		"KILL":        {run: (*Console).kill},
		"KILL_CLIENT": {run: (*Console).killClient},
		"DISABLE":     {run: (*Console).disable},
		"ENABLE":      {run: (*Console).enable},
		"WAIT_CLOSE":  {run: (*Console).waitClose},
		"RELOAD":      {run: (*Console).reload},
		"SHUTDOWN":    {run: (*Console).shutdown},
		"SUSPEND":     {run: (*Console).suspend},
		"SWITCHOVER":  {run: (*Console).switchover},
	}
}

// exec runs one statement.
func (c *Console) exec(ctx context.Context, cc *consoleConn, stmt string, r *reply) error {
	toks, err := tokenize(stmt)
	if err != nil {
		return errorf("42601", "%v in '%s'", err, stmt)
	}
	if len(toks) == 0 || toks[0].quote != 0 {
		return invalidCommand(stmt)
	}
	cmd, ok := commands[strings.ToUpper(toks[0].text)]
	if !ok {
		return invalidCommand(stmt)
	}
	switch c.accessOf(cc.user) {
	case noAccess:
		return errorf("42501", "not allowed: user %q is no longer in admin_users or stats_users", cc.user)
	case statsAccess:
		if !cmd.stats {
			return errAdminNeeded
		}
	}
	err = cmd.run(c, ctx, cc, toks[1:], r)
	if errors.Is(err, errSyntax) {
		return invalidCommand(stmt)
	}
	return err
}

// errAdminNeeded is PgBouncer's answer to a stats user running a command
// that changes something.
var errAdminNeeded = errorf("42501", "admin access needed")

// errSyntax makes exec answer with invalidCommand.
var errSyntax = errors.New("syntax error")

// invalidCommand is PgBouncer's answer to what it does not understand
// (42601: syntax_error).
func invalidCommand(stmt string) error {
	return errorf("42601", "invalid command '%s', use SHOW HELP;", stmt)
}

// record adds a console command to the event log.
func (c *Console) record(cc *consoleConn, cmd, db string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error: " + err.Error()
	}
	c.o.Events.Add(Event{Kind: EventCommand, Database: db, Reason: cmd, Outcome: outcome, Detail: "by " + cc.user})
	c.o.Log.Info("admin command", slog.String("command", cmd), slog.String("database", db), slog.String("user", cc.user), slog.String("outcome", outcome))
}

// consoleConns returns the connected console clients sorted by ID.
func (c *Console) consoleConns() []*consoleConn {
	c.mu.Lock()
	out := make([]*consoleConn, 0, len(c.conns))
	for _, cc := range c.conns {
		out = append(out, cc)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b *consoleConn) int { return cmp.Compare(a.id, b.id) })
	return out
}

// ClientErrors returns the ErrorResponses sent to console clients by
// SQLSTATE label (router.SQLStateLabel), for
// pauseproxy_client_errors_total{database="pgbouncer"}.
func (c *Console) ClientErrors() map[string]uint64 { return c.errors.Snapshot() }
