package router

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// Database is what clients connect to by name: its configuration, its pools
// (one per server login), and the hold that pauses it.
type Database struct {
	Name  string
	r     *Router
	stats dbStats

	disabled atomic.Bool
	removed  atomic.Bool

	mu     sync.Mutex // guards the fields below
	cfg    *config.Database
	pools  map[string]*pool.Pool // by server login user
	rpools map[string]*pool.Pool // replica-mode pools for read-only transactions, by server login user (reads.go)
	logins map[string]serverLogin
	holds  map[string]bool // reasons the database is held ("pause", "role-change", ...)
	target pool.Target
	login  *serverLogin // the last server login a pool was made for (for Probe)
	limit  *pool.Limit  // max_db_connections across the pools
	// refusal is a server login refusal that waiting cannot heal, found
	// by the role-change engine's check with refusalUser's login
	// (RefuseLogins); that login's pool fails held clients with it.
	refusal     error
	refusalUser string
	holdNote    string // why a hold lasts (SetHoldNote)

	dials     map[string]pool.DialFunc // each pool's dial, by server login (for listeners)
	listeners map[string]*listener     // LISTEN in transaction mode, by server login (listen.go)

	// managed is set when a role-change engine watches the database: it
	// then requires writability and handles trouble.
	managed atomic.Bool
	trouble chan struct{} // one pending trouble signal for the engine

	reads readSet // usable replicas (reads.go); its own mutex
}

func newDatabase(r *Router, name string, dc *config.Database) *Database {
	d := &Database{Name: name, r: r, cfg: dc, pools: make(map[string]*pool.Pool), trouble: make(chan struct{}, 1),
		limit: pool.NewLimit(dc.MaxDBConns)}
	d.target = pool.Target{Host: dc.Host, Port: dc.Port, Gen: 1}
	d.reads.gen = replicaGenBase
	return d
}

// Config returns the database's configuration.
func (d *Database) Config() *config.Database {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

func (d *Database) poolMode(user string) config.PoolMode {
	cfg := d.r.Config()
	if u, ok := cfg.Users[user]; ok && u.PoolMode != "" {
		return u.PoolMode
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cfg.PoolMode != "" {
		return d.cfg.PoolMode
	}
	return cfg.Proxy.PoolMode
}

// poolFor returns the pool for the server login a client maps to: the
// database's forced user when configured, else the client's own. For a
// database whose target is replicas, the pool dials replicas (reads.go).
func (d *Database) poolFor(clientUser string, login serverLogin) (*pool.Pool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dc := d.cfg
	if dc.User != "" {
		login = serverLogin{User: dc.User, Password: dc.Password}
	}
	login.DBName = dc.DBName
	if p, ok := d.pools[login.User]; ok {
		return p, nil
	}
	if d.logins == nil {
		d.logins = make(map[string]serverLogin)
	}
	d.logins[login.User] = login
	l := login
	d.login = &l
	p := d.newPoolLocked(login, d.replicaModeLocked())
	d.pools[login.User] = p
	return p, nil
}

// poolForRole returns the replica-mode pool of server login user (for a
// session's read-only transactions), made on first use with the login the
// session's own pool was made with.
func (d *Database) poolForRole(user string, replica bool) (*pool.Pool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !replica || d.replicaModeLocked() {
		if p, ok := d.pools[user]; ok {
			return p, nil
		}
		return nil, ErrNoLogin
	}
	if p, ok := d.rpools[user]; ok {
		return p, nil
	}
	login, ok := d.logins[user]
	if !ok {
		return nil, ErrNoLogin
	}
	if d.rpools == nil {
		d.rpools = make(map[string]*pool.Pool)
	}
	p := d.newPoolLocked(login, true)
	d.rpools[user] = p
	return p, nil
}

// newPoolLocked makes a pool for login: on the primary (or the configured
// host), or in replica mode.
func (d *Database) newPoolLocked(login serverLogin, replica bool) *pool.Pool {
	dc := d.cfg
	cfg := d.r.Config()
	pc := d.poolConfigLocked(cfg, login.User)
	tlsCfg := cfg.Proxy.ServerTLS
	appName := dc.ApplicationName
	// Fencing: a managed database's connections go only to a node that
	// says it is writable, checked on every new connection.
	fence := dc.WantsPrimary()
	dial := func(ctx context.Context, t pool.Target) (*pool.Server, error) {
		if h := d.r.dialHook; h != nil {
			return h(ctx, t)
		}
		pcfg, err := pgconnConfig(t, login, tlsCfg, appName)
		if err != nil {
			return nil, err
		}
		srv, err := dialServer(ctx, pcfg, d.managed.Load() && fence, nil)
		if err != nil {
			return nil, classifyLogin(err)
		}
		return srv, nil
	}
	target := d.target
	name := d.Name + "/" + login.User
	if replica {
		dial = d.replicaDial(login, tlsCfg, appName)
		d.reads.mu.Lock()
		target = pool.Target{Host: replicaHost, Gen: d.reads.gen}
		d.reads.mu.Unlock()
		if !d.replicaModeLocked() {
			name += "/replicas"
		}
	}
	if d.dials == nil {
		d.dials = make(map[string]pool.DialFunc)
	}
	if !replica || d.replicaModeLocked() {
		d.dials[login.User] = dial
	}
	p := pool.New(name, pc, target, dial, d.r.log, &d.r.connIDs)
	if !replica {
		// A replica's trouble is no role change (reads.go).
		p.OnServerError = d.idleServerError
		p.OnDialError = d.dialTrouble
	}
	if d.heldLocked(replica) {
		p.Hold()
	}
	if d.refusal != nil && d.refusalUser == login.User && !replica {
		p.Refuse(d.refusal)
	}
	p.SetHoldNote(d.holdNote)
	return p
}

// heldLocked reports whether a pool must be held now: a primary-mode pool
// by any reason, a replica-mode pool by any but a role change.
func (d *Database) heldLocked(replica bool) bool {
	for r := range d.holds {
		if !replica || r != HoldRoleChange {
			return true
		}
	}
	return false
}

// applyHoldsLocked holds or releases every pool per heldLocked.
func (d *Database) applyHoldsLocked() {
	apply := func(p *pool.Pool, replica bool) {
		if d.heldLocked(replica) {
			p.Hold()
		} else {
			p.Unhold()
		}
	}
	rm := d.replicaModeLocked()
	for _, p := range d.pools {
		apply(p, rm)
	}
	for _, p := range d.rpools {
		apply(p, true)
	}
}

func (d *Database) poolConfigLocked(cfg *config.Config, user string) pool.Config {
	px := &cfg.Proxy
	size := d.cfg.PoolSize
	if u, ok := cfg.Users[user]; ok && u.PoolSize > 0 {
		size = u.PoolSize
	}
	return pool.Config{
		Size:           size,
		MinSize:        d.cfg.MinPoolSize,
		Reserve:        d.cfg.ReservePool,
		ReserveTimeout: px.ReservePoolTimeout,
		Lifetime:       px.ServerLifetime,
		IdleTimeout:    px.ServerIdleTimeout,
		ConnectTimeout: px.ServerConnectTimeout,
		LoginRetry:     px.ServerLoginRetry,
		QueryWait:      px.QueryWaitTimeout,
		HoldTimeout:    px.HoldTimeout,
		MaxMessageSize: px.MaxMessageSize,
		Limits:         []*pool.Limit{d.limit, d.r.userLimit(cfg, user)},
	}
}

// reconfigure applies a reloaded database entry: new sizes to the pools and,
// when the target changed, a new generation that moves them there.
func (d *Database) reconfigure(dc *config.Database) {
	d.mu.Lock()
	old := d.cfg
	d.cfg = dc
	d.limit.SetMax(dc.MaxDBConns)
	cfg := d.r.Config()
	moved := old.Host != dc.Host || old.Port != dc.Port || old.DBName != dc.DBName ||
		old.User != dc.User || old.Password != dc.Password || old.TargetSessionAttrs != dc.TargetSessionAttrs
	var pools []*pool.Pool
	for user, p := range d.pools {
		p.SetConfig(d.poolConfigLocked(cfg, user))
		pools = append(pools, p)
	}
	for user, p := range d.rpools {
		p.SetConfig(d.poolConfigLocked(cfg, user))
	}
	if moved || !dc.RoutesReadsToReplicas() {
		// Replica-mode pools for reads are made again on first use.
		for _, p := range d.rpools {
			go p.Close()
		}
		d.rpools = nil
	}
	if moved {
		// Login settings are captured by each pool's dial function, so a
		// changed login (or role) means new pools; connections of the
		// old ones are closed when released.
		if old.User != dc.User || old.Password != dc.Password || old.DBName != dc.DBName ||
			old.TargetSessionAttrs != dc.TargetSessionAttrs {
			d.refusal = nil // the refused login is gone with its pools
			d.pools = make(map[string]*pool.Pool)
			d.dials = nil
			d.logins = nil // read pools wait for the next login's
			for _, p := range pools {
				go p.Close()
			}
			pools = nil
		}
		d.target = pool.Target{Host: dc.Host, Port: dc.Port, Gen: d.target.Gen + 1}
		if !d.replicaModeLocked() {
			for _, p := range pools {
				p.SetTarget(d.target)
			}
		}
	}
	if d.holds[holdNoReplica] && !dc.WantsReplica() {
		// No longer a replica-only database: its wait for a replica ends.
		delete(d.holds, holdNoReplica)
		d.applyHoldsLocked()
	}
	d.mu.Unlock()
	if moved {
		d.r.log.Info("database target changed", slog.String("database", d.Name),
			slog.String("host", dc.Host), slog.Int("port", dc.Port))
	}
}

// acquire gets a server connection for a session's next transaction.
func (d *Database) acquire(ctx context.Context, p *pool.Pool) (*pool.Conn, error) {
	return p.Acquire(ctx)
}

// Pools returns the database's pools.
func (d *Database) Pools() map[string]*pool.Pool {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]*pool.Pool, len(d.pools)+len(d.rpools))
	for k, v := range d.pools {
		out[k] = v
	}
	for k, v := range d.rpools {
		out[k+"/replicas"] = v
	}
	return out
}

// SetHoldNote says why the database stays held ("" : the default, no
// writable primary in time): clients that wait out hold_timeout are told.
func (d *Database) SetHoldNote(note string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.holdNote = note
	for _, p := range d.pools {
		p.SetHoldNote(note)
	}
	for _, p := range d.rpools {
		p.SetHoldNote(note)
	}
}

// Hold makes new transactions of this database wait at the transaction
// boundary; transactions already running continue. Each holder names a
// reason (an admin PAUSE, a role change, ...); the database stays held
// until every reason is released, so a RESUME cannot end a role change's
// hold and vice versa.
func (d *Database) Hold(reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.holds == nil {
		d.holds = make(map[string]bool)
	}
	d.holds[reason] = true
	d.applyHoldsLocked()
}

// Unhold releases one reason's hold; when none is left, held transactions
// go on in arrival order.
func (d *Database) Unhold(reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.holds, reason)
	d.applyHoldsLocked()
}

// Held reports whether the database is held, and why.
func (d *Database) Held() (bool, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var reasons []string
	for r := range d.holds {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	return len(reasons) > 0, reasons
}

// Active is the number of server connections bound to a client right now
// (transactions in flight, in transaction mode).
func (d *Database) Active() int {
	n := 0
	for _, p := range d.Pools() {
		n += p.Stats().Active
	}
	return n
}

// Retarget points every pool at host:port in a new generation. Idle
// connections to the old target close now, bound ones when released.
func (d *Database) Retarget(host string, port int) pool.Target {
	d.mu.Lock()
	d.target = pool.Target{Host: host, Port: port, Gen: d.target.Gen + 1}
	d.refusal = nil // SetTarget lifts each pool's
	if !d.replicaModeLocked() {
		for _, p := range d.pools {
			p.SetTarget(d.target)
		}
	}
	t := d.target
	d.mu.Unlock()
	// LISTEN again on the new target before the caller releases held
	// clients (listen.go), so that what they NOTIFY next is delivered.
	d.retargetListeners(t.Gen)
	return t
}

// Target returns where the database's pools dial.
func (d *Database) Target() pool.Target {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.target
}

// Disable refuses new client logins (admin DISABLE); Enable allows them.
func (d *Database) Disable() { d.disabled.Store(true) }

// Enable reverses Disable.
func (d *Database) Enable() { d.disabled.Store(false) }

// Disabled reports whether new logins are refused.
func (d *Database) Disabled() bool { return d.disabled.Load() }

// Reconnect closes idle server connections now and bound ones when
// released (admin RECONNECT).
func (d *Database) Reconnect() {
	for _, p := range d.Pools() {
		p.CloseIdle()
		// A fresh generation on the same target retires bound
		// connections as they are released.
	}
	t := d.Target()
	d.Retarget(t.Host, t.Port)
	d.reads.mu.Lock()
	d.reads.gen++
	d.reads.mu.Unlock()
	d.retireReplicaConns()
}

// serverTrouble is called when a server reports the signs of a primary
// going away (see roleChangeCode) or a server connection breaks: the
// role-change engine, if one watches the database, checks the primary.
//
// gen is the generation of the connection that reported it (0: not a
// connection's). A connection of an older generation points at a primary
// the pools have already left: its death after a role change is expected
// and must not start another cycle.
func (d *Database) serverTrouble(code string, gen uint64) {
	if gen >= replicaGenBase {
		// A replica's connection: discovery and the dial's check take a
		// replica out; the primary is not in question.
		return
	}
	if gen != 0 && gen < d.Target().Gen {
		return
	}
	d.r.log.Debug("server trouble", slog.String("database", d.Name), slog.String("sqlstate", code))
	select {
	case d.trouble <- struct{}{}:
	default:
	}
}

func (d *Database) close() {
	d.closeListeners()
	for _, p := range d.Pools() {
		p.Close()
	}
}

// dbStats are the database's counters, read by SHOW STATS and metrics.
type dbStats struct {
	Retries atomic.Int64 // refused batches run again (retry.go)
	// ListenerReconnects counts the LISTEN listeners' reconnections
	// (listen.go): notifications may have been lost each time.
	ListenerReconnects atomic.Int64
	Xacts              atomic.Int64
	Queries            atomic.Int64
	XactNanos          atomic.Int64
	WaitNanos          atomic.Int64

	// For SHOW STATS and metrics (admin, metrics).
	Received  atomic.Int64 // bytes from clients
	Sent      atomic.Int64 // bytes to clients
	XactTimes Histogram
	WaitTimes Histogram

	// PgBouncer 1.25's SHOW STATS counters (admin) and the client errors
	// (metrics; clienterrors.go).
	QueryNanos   atomic.Int64 // time servers spent with a client's work outstanding (querytime.go)
	Assignments  atomic.Int64 // server connections given to a client
	ClientParses atomic.Int64 // named statements prepared by clients
	ServerParses atomic.Int64 // named statements the proxy prepared on a server
	Binds        atomic.Int64 // Binds of named statements forwarded to a server
	ClientErrors ErrorCounts
}

func (s *dbStats) xact(d time.Duration) {
	s.Xacts.Add(1)
	s.XactNanos.Add(int64(d))
	s.XactTimes.Observe(d)
}

func (s *dbStats) query() { s.Queries.Add(1) }

func (s *dbStats) waited(d time.Duration) {
	s.Assignments.Add(1)
	s.WaitNanos.Add(int64(d))
	s.WaitTimes.Observe(d)
}

// Stats returns the database's counters.
func (d *Database) Stats() *dbStats { return &d.stats }

func lower(s string) string { return strings.ToLower(s) }
