package router

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Router owns the databases, their pools and the logged-in sessions.
type Router struct {
	log      *slog.Logger
	conf     atomic.Pointer[config.Config]
	connIDs  atomic.Uint64
	sessIDs  atomic.Uint64
	draining atomic.Bool
	stmts    stmtRegistry

	loginErrors ErrorCounts // clienterrors.go

	ulMu       sync.Mutex // guards userLimits
	userLimits map[string]*pool.Limit

	mu       sync.Mutex // guards the maps below; never held while blocking
	dbs      map[string]*Database
	sessions map[uint64]*Session
	keys     map[CancelKey]*Session
	drained  chan struct{}   // closed when sessions becomes empty, for shutdown
	holdAll  map[string]bool // reasons that hold every database (holds.go)

	// shapeErr is a server's 0A000 "cached plan must not change result
	// type", replayed for stale statements (shape.go).
	shapeErr atomic.Pointer[[]byte]

	// dialHook, when set (by the package's own tests), replaces the
	// dialing of server connections: a scripted server over net.Pipe.
	dialHook pool.DialFunc
}

// New returns a router serving cfg.
func New(cfg *config.Config, log *slog.Logger) *Router {
	r := &Router{
		log:      log,
		dbs:      make(map[string]*Database),
		sessions: make(map[uint64]*Session),
		keys:     make(map[CancelKey]*Session),
	}
	r.conf.Store(cfg)
	for name, dc := range cfg.Databases {
		r.dbs[name] = newDatabase(r, name, dc)
	}
	return r
}

func (r *Router) cfg() *config.Proxy { return &r.conf.Load().Proxy }

// Config returns the configuration in force.
func (r *Router) Config() *config.Config { return r.conf.Load() }

// Reload applies a new (validated) configuration: pool sizes, users and
// database targets change; connected clients stay.
func (r *Router) Reload(cfg *config.Config) {
	r.conf.Store(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, dc := range cfg.Databases {
		if d, ok := r.dbs[name]; ok {
			d.reconfigure(dc)
		} else {
			r.dbs[name] = r.holdNew(newDatabase(r, name, dc))
		}
	}
	for name, d := range r.dbs {
		if _, ok := cfg.Databases[name]; !ok && name != "*" {
			d.removed.Store(true)
		}
	}
	// New idle timeouts apply to connected clients at once, counted from
	// now (lock order: r.mu before a session's mu).
	for _, s := range r.sessions {
		s.mu.Lock()
		s.idleDeadlineLocked()
		s.mu.Unlock()
	}
}

// Database returns the database clients know as name, creating it from the
// "*" fallback entry when there is one.
func (r *Router) Database(name string) (*Database, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.dbs[name]; ok && !d.removed.Load() {
		return d, true
	}
	dc, ok := r.conf.Load().DatabaseFor(name)
	if !ok {
		return nil, false
	}
	d := r.holdNew(newDatabase(r, name, dc))
	r.dbs[name] = d
	return d, true
}

// Databases returns the databases sorted by name.
func (r *Router) Databases() []*Database {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Database, 0, len(r.dbs))
	for _, d := range r.dbs {
		if !d.removed.Load() {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Sessions returns the logged-in sessions sorted by ID.
func (r *Router) Sessions() []*Session {
	r.mu.Lock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ClientCount is the number of logged-in sessions.
func (r *Router) ClientCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Login describes a client that passed authentication.
type Login struct {
	Conn    net.Conn
	Reader  *wire.Reader
	Startup *wire.Startup
	DB      *Database
	User    string
	// ServerUser/ServerPassword log in to the server when the database
	// entry does not force a user.
	ServerUser     string
	ServerPassword string
	ServerSCRAM    ServerSCRAM // without ServerPassword: SCRAM pass-through (scrampass.go)
}

// loginBindWait is how long a session-mode login waits for a server
// connection to bind before it goes on without one (see Start).
const loginBindWait = 2 * time.Second

// StartError is a login that cannot proceed; Code is its SQLSTATE.
type StartError struct {
	Code string
	Msg  string
}

func (e *StartError) Error() string { return e.Msg }

// Start finishes a client's login: it checks the startup parameters, finds
// (or creates) the pool, learns the server's parameters, and sends
// AuthenticationOk, ParameterStatus, BackendKeyData and ReadyForQuery. The
// session it returns is not yet running; call Run.
func (r *Router) Start(ctx context.Context, l Login) (*Session, error) {
	cfg := r.conf.Load()
	want, err := startupParams(l.Startup, cfg.Proxy.IgnoreStartupParams)
	if err != nil {
		return nil, err
	}
	d := l.DB
	if d.disabled.Load() {
		return nil, &StartError{Code: "08P01", Msg: fmt.Sprintf("pauseproxy: database %q is disabled", d.Name)}
	}
	p, err := d.poolFor(l.User, serverLogin{User: l.ServerUser, Password: l.ServerPassword, SCRAM: l.ServerSCRAM})
	if err != nil {
		return nil, err
	}
	welcome, err := p.Welcome(ctx)
	if err != nil {
		var pe *pool.Error
		if errors.As(err, &pe) {
			return nil, &StartError{Code: pe.Code, Msg: pe.Msg}
		}
		return nil, &StartError{Code: "08006", Msg: "pauseproxy: " + err.Error()}
	}
	s := &Session{
		ID: r.sessIDs.Add(1), User: l.User, DBName: d.Name, Addr: l.Conn.RemoteAddr(), Start: time.Now(),
		r: r, db: d, pool: p, mode: d.poolMode(l.User),
		cc: l.Conn, crd: l.Reader, cw: newClientWriter(countErrors(l.Conn, d)),
		tx: wire.TxIdle,
	}
	s.self = s
	s.loginUser = d.serverUser(l.ServerUser)
	s.tracking = s.mode == config.PoolModeTransaction && cfg.Proxy.MaxPreparedStatements > 0
	s.want = mergeParams(welcome, want)
	var key *CancelKey
	if held, _ := d.Held(); s.mode == config.PoolModeSession && cfg.Proxy.PeerID == 0 && !held {
		// Session mode is transparent: the session's server connection is
		// bound now, its parameters are the ones reported, and the client
		// gets its real BackendKeyData, so pg_backend_pid(), the process
		// ID of NotificationResponses and pg_terminate_backend() agree
		// with what the driver holds. Cancels still come through the
		// proxy, which looks the key up. (With peer_id set, keys carry
		// the instance's id instead: peers.go.) A login does not wait
		// for a server, though: while the database is held (PAUSE, a
		// role change) or its pool stays full for loginBindWait, the
		// client logs in with a key of the proxy's and waits at its
		// first statement, as before, rather than at its connect timeout.
		bctx, cancel := context.WithTimeout(ctx, loginBindWait)
		_, err := s.bind(bctx, nil)
		cancel()
		switch {
		case err == nil:
		case bctx.Err() != nil && ctx.Err() == nil:
			// Bound at the first statement instead.
		default:
			var pe *pool.Error
			if errors.As(err, &pe) {
				return nil, &StartError{Code: pe.Code, Msg: pe.Msg}
			}
			return nil, &StartError{Code: "08006", Msg: "pauseproxy: " + err.Error()}
		}
	}
	s.mu.Lock()
	srv := s.bnd.server
	s.mu.Unlock()
	if srv != nil {
		if sk := srv.SecretKey(); len(sk) == 4 {
			key = &CancelKey{PID: srv.PID(), Secret: binary.BigEndian.Uint32(sk)}
		}
		// What the client is told at login is this server's, except for
		// the values its own startup parameters set (by the SETs bind
		// queued).
		own := srv.Params()
		for k, v := range welcome {
			if _, ok := own[k]; !ok {
				own[k] = v
			}
		}
		welcome = own
	}
	s.Key = r.register(s, key)

	out := []byte{wire.MsgAuthentication, 0, 0, 0, 8, 0, 0, 0, 0}
	for _, k := range sortedKeys(welcome) {
		v := welcome[k]
		for _, p := range s.want {
			if p.name == k {
				v = p.value
			}
		}
		out = wire.AppendParameterStatus(out, k, v)
	}
	for _, p := range s.want {
		if _, ok := welcome[p.name]; !ok {
			if _, reported := reportedParams[lower(p.name)]; reported {
				out = wire.AppendParameterStatus(out, p.name, p.value)
			}
		}
	}
	for i := range s.want {
		s.want[i].seen = s.want[i].value
	}
	s.initial = append([]param(nil), s.want...)
	out = append(out, wire.MsgBackendKeyData, 0, 0, 0, 12)
	out = binary.BigEndian.AppendUint32(out, s.Key.PID)
	out = binary.BigEndian.AppendUint32(out, s.Key.Secret)
	out = wire.AppendReadyForQuery(out, wire.TxIdle)
	if _, err := l.Conn.Write(out); err != nil {
		// end gives back a server connection bound at login.
		s.end()
		return nil, err
	}
	return s, nil
}

// startupParams turns the client's startup parameters into the session
// parameters to carry, refusing those the proxy cannot carry unless
// ignore_startup_parameters lists them (PgBouncer's rule).
func startupParams(st *wire.Startup, ignore []string) ([]param, error) {
	ignored := func(n string) bool {
		for _, i := range ignore {
			if lower(i) == lower(n) {
				return true
			}
		}
		return false
	}
	var out []param
	add := func(name, value string) error {
		if cn, ok := canonicalParam(name); ok {
			for i := range out {
				if out[i].name == cn {
					out[i].value = value
					return nil
				}
			}
			_, rep := reportedParams[lower(cn)]
			out = append(out, param{name: cn, value: value, reported: rep})
			return nil
		}
		if ignored(name) || strings.HasPrefix(lower(name), "_pq_.") {
			// Protocol options are the login's business (negotiated
			// there), not session parameters.
			return nil
		}
		// PostgreSQL's answer to a parameter it does not know, or
		// cannot set in a running session.
		return &StartError{Code: "42704", Msg: fmt.Sprintf("pauseproxy: unrecognized or unsettable configuration parameter %q in the startup packet (add it to ignore_startup_parameters to ignore it)", name)}
	}
	for _, p := range st.Params {
		switch lower(p.Name) {
		case "user", "database":
			continue
		case "replication":
			if p.Value == "false" || p.Value == "off" || p.Value == "0" || p.Value == "no" {
				continue
			}
			return nil, &StartError{Code: "08P01", Msg: "pauseproxy: replication connections are not supported"}
		case "options":
			if ignored("options") {
				continue
			}
			opts, err := parseOptions(p.Value)
			if err != nil {
				return nil, &StartError{Code: "08P01", Msg: "pauseproxy: " + err.Error()}
			}
			for _, o := range opts {
				if err := add(o.name, o.value); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := add(p.Name, p.Value); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mergeParams starts from the reported parameters a server sends at login
// and overlays what the client asked for.
func mergeParams(welcome map[string]string, asked []param) []param {
	var out []param
	for _, name := range reportedParams {
		if v, ok := welcome[name]; ok {
			out = append(out, param{name: name, value: v, reported: true})
		}
	}
	for _, a := range asked {
		found := false
		for i := range out {
			if out[i].name == a.name {
				out[i].value = a.value
				found = true
			}
		}
		if !found {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (r *Router) register(s *Session, want *CancelKey) CancelKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	if want != nil {
		if _, taken := r.keys[*want]; !taken && want.PID != 0 {
			r.keys[*want] = s
			r.sessions[s.ID] = s
			return *want
		}
	}
	for {
		var b [8]byte
		rand.Read(b[:])
		k := r.stampPeer(CancelKey{PID: binary.BigEndian.Uint32(b[:4]) & 0x7fffffff, Secret: binary.BigEndian.Uint32(b[4:])})
		if _, taken := r.keys[k]; taken || k.PID == 0 {
			continue
		}
		r.keys[k] = s
		r.sessions[s.ID] = s
		return k
	}
}

func (r *Router) removeSession(s *Session) {
	r.mu.Lock()
	delete(r.sessions, s.ID)
	delete(r.keys, s.Key)
	if len(r.sessions) == 0 && r.drained != nil {
		close(r.drained)
		r.drained = nil
	}
	r.mu.Unlock()
}

// Cancel forwards a client's CancelRequest to the server connection serving
// it right now. A client waiting for a server connection has its wait
// ended (its statement gets 57014 and never runs). A client with neither
// has nothing running: the request is dropped, as PostgreSQL drops a
// cancel for an idle backend.
func (r *Router) Cancel(k CancelKey) {
	k, forwarded := r.routeCancel(k) // another peer's key (peers.go)
	if forwarded {
		return
	}
	r.mu.Lock()
	s := r.keys[k]
	r.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.bnd.server
	if srv == nil {
		if s.phase == phaseWaiting {
			// The statement waits in the proxy (a full pool, PAUSE, a
			// role change): it leaves the queue and is never sent.
			s.waitCancel(errClientCancel)
		}
		return
	}
	// Now, or once the client's statement has reached the server
	// (cancel.go).
	s.cancelWanted.Store(true)
	if s.written.Load() && s.swallow.Load() == 0 && s.cancelWanted.CompareAndSwap(true, false) {
		if time.Since(s.bnd.start) < freshBinding {
			s.cancelCheckedLocked(srv)
		} else {
			s.cancelLocked(srv)
		}
	}
}

// WaitIdle blocks until no session is left or ctx is done.
func (r *Router) WaitIdle(ctx context.Context) error {
	r.mu.Lock()
	if len(r.sessions) == 0 {
		r.mu.Unlock()
		return nil
	}
	if r.drained == nil {
		r.drained = make(chan struct{})
	}
	ch := r.drained
	r.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every pool. Sessions end by their own contexts.
func (r *Router) Close() {
	for _, d := range r.Databases() {
		d.close()
	}
}

func isTLS(c net.Conn) bool {
	// A connection that wraps another (the login's, holding bytes the
	// client sent ahead) says so with NetConn, as tls.Conn does.
	for {
		switch t := c.(type) {
		case *tls.Conn:
			return true
		case interface{ NetConn() net.Conn }:
			c = t.NetConn()
		default:
			return false
		}
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// userLimit returns the max_user_connections limit shared by a server
// login's pools in every database, creating it at first use; its bound
// follows the configuration.
func (r *Router) userLimit(cfg *config.Config, user string) *pool.Limit {
	max := cfg.Proxy.MaxUserConnections
	if u, ok := cfg.Users[user]; ok && u.MaxUserConns > 0 {
		max = u.MaxUserConns
	}
	r.ulMu.Lock()
	defer r.ulMu.Unlock()
	if r.userLimits == nil {
		r.userLimits = make(map[string]*pool.Limit)
	}
	l, ok := r.userLimits[user]
	if !ok {
		l = pool.NewLimit(max)
		r.userLimits[user] = l
	} else {
		l.SetMax(max)
	}
	return l
}
