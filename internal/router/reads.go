package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// Reads: replicas and the pools that use them.
//
// A database whose target_session_attrs names replicas (read-only,
// standby, prefer-standby) has its pools in replica mode: each new server
// connection goes to the least busy usable replica, checked with
// pg_is_in_recovery() = true when it is dialed. A read-write database with
// read_only_routing = "replica" keeps its pools on the primary and has a
// second set of replica-mode pools (rpools) for the transactions clients
// declare read-only; with no usable replica those run on the primary.
//
// Which replicas are usable is the role-change side's decision
// (internal/failover watches discovery: role, state, lag, tags) handed in
// with SetReplicas. Any change of the set starts a new replica
// generation: idle connections close now, bound ones when released (a
// replica that left, and reads that went to the primary meanwhile).
// pick counts a connection against its replica from the moment its dial
// starts, so that concurrent dials spread.
// Replica generations start at replicaGenBase so that trouble reported by
// a replica connection (serverTrouble) is never taken for the primary's.
//
// A role change holds only work bound for the primary: replica-mode pools
// are held by an admin PAUSE (and, for a read-only database, while no
// replica is usable: holdNoReplica), never by HoldRoleChange.

// replicaGenBase is the first replica generation.
const replicaGenBase = 1 << 40

// holdNoReplica holds a replica-only database while no replica is usable.
const holdNoReplica = "no-replica"

// replicaHost is the Host of a replica-mode pool's Target: the dial picks
// the address.
const replicaHost = "(replicas)"

// quarantine is how long a replica whose dial failed is skipped.
const quarantine = 2 * time.Second

// Addr is a server address.
type Addr struct {
	Host string
	Port int
}

func (a Addr) String() string {
	if len(a.Host) > 0 && a.Host[0] == '/' {
		return fmt.Sprintf("%s:%d", a.Host, a.Port)
	}
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

// readSet is the database's usable replicas and what its replica-mode
// pools opened on each. Lock order: Database.mu, then readSet.mu; nothing
// takes Database.mu while holding readSet.mu.
type readSet struct {
	mu       sync.Mutex
	known    bool // SetReplicas was called once
	replicas []Addr
	primary  Addr // the source's primary (prefer-standby's fallback), zero if none
	open     map[string]int
	down     map[string]time.Time
	gen      uint64
}

// ReadState is what SHOW TOPOLOGY and /readyz show of a database's reads.
type ReadState struct {
	Known    bool     // the watcher reported once
	Replicas []string // usable replicas, in the order they were reported
	Open     map[string]int
}

// Reads returns the database's usable replicas and the server connections
// open to each.
func (d *Database) Reads() ReadState {
	d.reads.mu.Lock()
	defer d.reads.mu.Unlock()
	st := ReadState{Known: d.reads.known, Open: make(map[string]int, len(d.reads.open))}
	for _, a := range d.reads.replicas {
		st.Replicas = append(st.Replicas, a.String())
	}
	for k, v := range d.reads.open {
		st.Open[k] = v
	}
	return st
}

// UsesReplicas reports whether any of the database's pools dial replicas:
// its target is read-only, standby or prefer-standby, or it routes
// read-only transactions to replicas.
func (d *Database) UsesReplicas() bool {
	dc := d.Config()
	return dc.WantsReplica() || dc.RoutesReadsToReplicas()
}

// replicaMode reports whether the main pools dial replicas.
func (d *Database) replicaModeLocked() bool { return d.cfg.WantsReplica() }

// SetReplicas hands in the usable replicas (in the source's order) and the
// source's primary (nil: none named). Any change of the set starts a new
// replica generation: connections to a replica that left close (idle ones
// now, bound ones when released), and so do those a read made to the
// primary while no replica was usable, so the load spreads again. For a
// read-only or standby database the pools are held while the set is
// empty.
func (d *Database) SetReplicas(replicas []Addr, primary *Addr) {
	attrs := d.Config().TargetSessionAttrs // Database.mu before readSet.mu
	rs := &d.reads
	rs.mu.Lock()
	first := !rs.known
	changed := first || !slices.Equal(rs.replicas, replicas)
	retire := changed && !first
	rs.known = true
	rs.replicas = slices.Clone(replicas)
	oldPrimary := rs.primary
	rs.primary = Addr{}
	if primary != nil {
		rs.primary = *primary
	}
	if oldPrimary != rs.primary && attrs == config.TargetPreferStandby && len(replicas) == 0 {
		retire = true // prefer-standby's fallback moved
	}
	if retire {
		rs.gen++
	}
	rs.mu.Unlock()

	if retire {
		d.retireReplicaConns()
	}
	if attrs == config.TargetReadOnly || attrs == config.TargetStandby {
		if len(replicas) == 0 {
			d.SetHoldNote("no usable replica")
			d.Hold(holdNoReplica)
		} else {
			d.Unhold(holdNoReplica)
			d.SetHoldNote("")
		}
	}
	if changed {
		names := make([]string, len(replicas))
		for i, a := range replicas {
			names[i] = a.String()
		}
		d.r.log.Info("replicas for reads", slog.String("database", d.Name), slog.Any("replicas", names))
	}
}

// retireReplicaConns points the replica-mode pools at the current replica
// generation.
func (d *Database) retireReplicaConns() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads.mu.Lock()
	gen := d.reads.gen
	d.reads.mu.Unlock()
	for _, p := range d.replicaPoolsLocked() {
		p.SetTarget(pool.Target{Host: replicaHost, Gen: gen})
	}
}

// replicaPoolsLocked lists the pools that dial replicas.
func (d *Database) replicaPoolsLocked() []*pool.Pool {
	var out []*pool.Pool
	if d.replicaModeLocked() {
		for _, p := range d.pools {
			out = append(out, p)
		}
	}
	for _, p := range d.rpools {
		out = append(out, p)
	}
	return out
}

// pick chooses the replica a new server connection tries next: the least
// busy usable one not in tried (ties in the source's order), replicas whose
// last dial failed within quarantine last. The connection is counted at
// once, before it is dialed, so that concurrent dials spread; release
// uncounts it (call it when the dial fails, or when the connection
// closes).
func (d *Database) pick(tried []Addr) (a Addr, release func(), ok bool) {
	rs := &d.reads
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	best, bestDown := -1, true
	for i, r := range rs.replicas {
		if slices.Contains(tried, r) {
			continue
		}
		t, isDown := rs.down[r.String()]
		down := isDown && now.Sub(t) < quarantine
		switch {
		case best < 0,
			bestDown && !down,
			bestDown == down && rs.open[r.String()] < rs.open[rs.replicas[best].String()]:
			best, bestDown = i, down
		}
	}
	if best < 0 {
		return Addr{}, nil, false
	}
	a = rs.replicas[best]
	return a, d.countLocked(a), true
}

// fallback is where a replica-mode dial goes when no replica answers
// (zero: nowhere): prefer-standby's primary as discovery names it, or for
// read_only_routing the database's primary, which serves read-only
// transactions as well.
func (d *Database) fallback() Addr {
	dc, t := d.Config(), d.Target() // Database.mu before readSet.mu
	switch {
	case dc.TargetSessionAttrs == config.TargetPreferStandby:
		d.reads.mu.Lock()
		defer d.reads.mu.Unlock()
		return d.reads.primary
	case dc.RoutesReadsToReplicas():
		return Addr{Host: t.Host, Port: t.Port}
	}
	return Addr{}
}

// readsUsable reports whether a replica is usable and not quarantined.
func (d *Database) readsUsable() bool {
	rs := &d.reads
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	for _, a := range rs.replicas {
		if t, ok := rs.down[a.String()]; !ok || now.Sub(t) >= quarantine {
			return true
		}
	}
	return false
}

func (d *Database) markDown(a Addr) {
	rs := &d.reads
	rs.mu.Lock()
	if rs.down == nil {
		rs.down = make(map[string]time.Time)
	}
	rs.down[a.String()] = time.Now()
	rs.mu.Unlock()
}

// countLocked counts a connection to a; the returned func uncounts it
// (once). Called with readSet.mu held.
func (d *Database) countLocked(a Addr) func() {
	rs := &d.reads
	key := a.String()
	if rs.open == nil {
		rs.open = make(map[string]int)
	}
	rs.open[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			rs.mu.Lock()
			rs.open[key]--
			if rs.open[key] <= 0 {
				delete(rs.open, key)
			}
			rs.mu.Unlock()
		})
	}
}

// markUp forgets a's last failed dial.
func (d *Database) markUp(a Addr) {
	d.reads.mu.Lock()
	delete(d.reads.down, a.String())
	d.reads.mu.Unlock()
}

// NotReplicaError is a server that is not in recovery where a replica was
// required (a replica promoted since discovery last looked).
type NotReplicaError struct{ Addr string }

func (e *NotReplicaError) Error() string {
	return "server " + e.Addr + " is not a replica (pg_is_in_recovery() = false)"
}

// ErrNoReplica is a replica-mode dial with no usable replica.
var ErrNoReplica = errors.New("no usable replica")

// replicaDial returns the DialFunc of a replica-mode pool for login.
func (d *Database) replicaDial(login serverLogin, tlsCfg config.TLS, appName string) pool.DialFunc {
	return func(ctx context.Context, _ pool.Target) (*pool.Server, error) {
		var tried []Addr
		var errs []error
		for {
			a, release, ok := d.pick(tried)
			if !ok {
				break
			}
			tried = append(tried, a)
			srv, err := d.dialAddr(ctx, a, login, tlsCfg, appName, true)
			if err == nil {
				d.markUp(a)
				srv.Conn = &countedConn{Conn: srv.Conn, done: release}
				return srv, nil
			}
			release()
			if ctx.Err() != nil {
				return nil, classifyLogin(err)
			}
			d.markDown(a)
			errs = append(errs, fmt.Errorf("replica %s: %w", a, err))
			var le *pool.LoginError
			if errors.As(classifyLogin(err), &le) && !le.Wait {
				// A wrong password is wrong everywhere.
				return nil, classifyLogin(err)
			}
		}
		if fb := d.fallback(); fb.Host != "" {
			// No replica answered: the primary serves the reads
			// (unchecked: a read-only transaction is safe anywhere).
			d.reads.mu.Lock()
			release := d.countLocked(fb)
			d.reads.mu.Unlock()
			srv, err := d.dialAddr(ctx, fb, login, tlsCfg, appName, false)
			if err == nil {
				srv.Conn = &countedConn{Conn: srv.Conn, done: release}
				return srv, nil
			}
			release()
			errs = append(errs, fmt.Errorf("primary %s: %w", fb, err))
		}
		if len(errs) == 0 {
			errs = append(errs, ErrNoReplica)
		}
		return nil, &pool.LoginError{Err: errors.Join(errs...), Wait: true}
	}
}

// dialAddr dials a for a replica-mode pool.
func (d *Database) dialAddr(ctx context.Context, a Addr, login serverLogin, tlsCfg config.TLS, appName string, requireReplica bool) (*pool.Server, error) {
	t := pool.Target{Host: a.Host, Port: a.Port}
	if h := d.r.dialHook; h != nil {
		return h(ctx, t)
	}
	pcfg, err := pgconnConfig(t, login, tlsCfg, appName)
	if err != nil {
		return nil, err
	}
	return dialReplica(ctx, pcfg, requireReplica)
}

// dialReplica is dialServer for a replica: with requireReplica, a server
// that is not in recovery is refused.
func dialReplica(ctx context.Context, cfg *pgconn.Config, requireReplica bool) (*pool.Server, error) {
	srv, err := dialServer(ctx, cfg, false, func(ctx context.Context, pc *pgconn.PgConn) error {
		if !requireReplica {
			return nil
		}
		writable, err := isWritable(ctx, pc)
		if err != nil {
			return err
		}
		if writable {
			return &NotReplicaError{Addr: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))}
		}
		return nil
	})
	return srv, err
}

// countedConn uncounts its connection from the replica's load when closed.
type countedConn struct {
	net.Conn
	done func()
}

func (c *countedConn) Close() error {
	c.done()
	return c.Conn.Close()
}

// routesReads reports whether read-only transactions of this database may
// go to replicas (read_only_routing): the first message of a transaction
// is looked at only then.
func (d *Database) routesReads() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.RoutesReadsToReplicas()
}

// readPool returns the replica-mode pool a session's declared read-only
// transaction uses, or nil when the database has no usable replica (the
// transaction then runs on the primary). The caller checked routesReads.
func (d *Database) readPool(s *Session) *pool.Pool {
	if !d.readsUsable() {
		return nil
	}
	p, err := d.poolForRole(s.loginUser, true)
	if err != nil {
		return nil
	}
	return p
}

// ProbeRole connects to host:port with a server login of this database
// and reports whether it is writable and, for a replica, how far its
// replay is behind: now() - pg_last_xact_replay_timestamp() while received
// WAL waits to be replayed, 0 once it has replayed all it received (an
// idle primary sends nothing, and the timestamp alone would grow).
func (d *Database) ProbeRole(ctx context.Context, host string, port int) (writable bool, delay time.Duration, err error) {
	pc, err := d.probeConn(ctx, host, port)
	if err != nil {
		return false, 0, err
	}
	defer closeProbe(pc)
	res, err := pc.Exec(ctx, `SELECT pg_catalog.pg_is_in_recovery(),
  CASE WHEN NOT pg_catalog.pg_is_in_recovery()
         OR pg_catalog.pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_catalog.pg_last_wal_replay_lsn() THEN 0
       ELSE coalesce(extract(epoch FROM now() - pg_catalog.pg_last_xact_replay_timestamp()), 0) END::float8::text`).ReadAll()
	if err != nil {
		return false, 0, fmt.Errorf("check pg_is_in_recovery(): %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 2 {
		return false, 0, errors.New("check pg_is_in_recovery(): unexpected result")
	}
	row := res[0].Rows[0]
	secs, _ := strconv.ParseFloat(string(row[1]), 64)
	return string(row[0]) == "f", time.Duration(secs * float64(time.Second)), nil
}
