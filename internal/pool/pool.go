// Package pool keeps server connections for one (database, user) pair: it
// dials them through a DialFunc, hands them out to sessions in arrival order,
// takes them back, and evicts them by age and idleness, with PgBouncer's
// meaning of pool_size, min_pool_size, reserve_pool_size,
// server_lifetime, server_idle_timeout and query_wait_timeout.
//
// Two seams serve role changes: Hold makes new acquisitions queue (in
// arrival order) even when connections are free, and SetTarget points the
// pool at another backend and generation, so that connections of an older
// generation are closed when released and never handed out again.
//
// A failed server login is classified by the DialFunc (LoginError): a
// server that is full or restarting keeps acquisitions waiting for a
// released connection or the next attempt after server_login_retry
// (within query_wait_timeout); a refusal that cannot heal fails them at
// once unless the pool has open connections to hand out. Refuse fails
// acquisitions held for a check that found such a refusal (refusal.go).
//
// The pool does not speak SQL, authenticate, or decide where the primary is;
// each Conn runs one reader goroutine that forwards server messages to the
// session bound to it (see Handler).
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Target is the backend a pool dials, and the generation of the decision
// that chose it. A connection is reused only while its generation is current.
type Target struct {
	Host string // host name, IP, or Unix socket directory
	Port int
	Gen  uint64
}

// DialFunc opens and authenticates a server connection to t.
type DialFunc func(ctx context.Context, t Target) (*Server, error)

// Config sizes a pool. Zero values mean "no limit" for durations.
type Config struct {
	Size           int
	MinSize        int
	Reserve        int
	ReserveTimeout time.Duration
	Lifetime       time.Duration
	IdleTimeout    time.Duration
	ConnectTimeout time.Duration
	LoginRetry     time.Duration
	QueryWait      time.Duration // query_wait_timeout
	HoldTimeout    time.Duration // hold_timeout: the longest wait in a hold
	MaxMessageSize int
	// Limits shared with other pools: max_db_connections,
	// max_user_connections.
	Limits []*Limit
}

// Error is an acquisition failure to report to the client with its SQLSTATE.
type Error struct {
	Code string
	Msg  string
	Err  error
	// Dial is set when dialing a server connection failed (Err says why).
	Dial bool
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// ErrClosed is returned by Acquire on a closed pool.
var ErrClosed = &Error{Code: "08006", Msg: "pool closed"}

// Pool is the set of server connections of one (database, user).
type Pool struct {
	Name   string
	dial   DialFunc
	log    *slog.Logger
	nextID *atomic.Uint64

	// OnServerError, when set, is called with the SQLSTATE of an error a
	// server reported while idle (for example 57P01 at shutdown).
	OnServerError func(code string, gen uint64)
	// OnDialError, when set, is told why a dial failed; returning true
	// means the pool is now held while the cause is dealt with, and the
	// acquisition waits in that hold instead of failing.
	OnDialError func(err error) bool

	mu       sync.Mutex // guards all below
	cfg      Config
	target   Target
	held     bool
	closed   bool
	idle     []*Conn // most recently used last
	total    int     // open plus dialing
	active   int
	dialing  int
	waiters  waitQueue
	loginErr error
	loginAt  time.Time
	// retryTimer serves waiters when server_login_retry has passed after
	// a refusal that heals by waiting (refusal.go).
	retryTimer *time.Timer
	// expiry ends the waits whose deadline (hold_timeout,
	// query_wait_timeout) passed: one timer for the pool, armed at the
	// earliest deadline, instead of one per wait (expire).
	expiry       *time.Timer
	expiryAt     time.Time // when expiry fires; zero when not armed
	loggedReason string    // the login failure last logged (noteLoginLocked)
	loggedWait   bool      // and whether it heals by waiting
	loggedAt     time.Time // when it last happened
	loginRepeats int       // its repeats not logged
	refusal      error     // set by Refuse: held acquisitions fail with it
	holdNote     string    // why the hold lasts, for the hold_timeout error (SetHoldNote)
	welcome      map[string]string
	stopJan      chan struct{}
	janDone      chan struct{}

	conns connSet // every open connection, for SHOW SERVERS (inspect.go)
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan grant, 1)} }}

type waiter struct {
	ch       chan grant
	since    time.Time
	deadline time.Time
	held     bool // queued because of a hold
}

// grant is what a waiter receives: a connection, the right to dial one
// (its slot already counted), or an error.
type grant struct {
	c       *Conn
	dial    bool
	err     error
	expired bool // the wait's deadline passed (expire): the waiter is out of the queue
}

// New returns a pool dialing t with dial. ids numbers connections across
// pools (SHOW SERVERS); it may be shared.
func New(name string, cfg Config, t Target, dial DialFunc, log *slog.Logger, ids *atomic.Uint64) *Pool {
	if ids == nil {
		ids = new(atomic.Uint64)
	}
	p := &Pool{
		Name: name, cfg: cfg, target: t, dial: dial, log: log, nextID: ids,
		stopJan: make(chan struct{}), janDone: make(chan struct{}),
	}
	for _, l := range cfg.Limits {
		l.register(p)
	}
	go p.janitor()
	return p
}

// Acquire returns a server connection for one transaction (or session),
// waiting in arrival order while the pool is held or full. The caller must
// Bind it, and the binding ends with the handler's release or failure; if
// Bind fails the caller gives it back with Put.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	start := time.Now()
	for {
		c, err := p.acquireOnce(ctx, start)
		if err == nil {
			return c, nil
		}
		// A dial that failed because the server is going away or not
		// writable: OnDialError holds the pool (a role change starts), so
		// the next round waits in that hold, within the same hold_timeout.
		var pe *Error
		if errors.As(err, &pe) && pe.Dial && ctx.Err() == nil {
			if p.OnDialError != nil && time.Since(start) < p.holdTimeout() && p.OnDialError(pe.Err) {
				continue
			}
			// A server that is full (53300) or restarting, or a pool
			// that has connections to release: wait for one of them,
			// or for the next login attempt after server_login_retry,
			// within query_wait_timeout (PgBouncer keeps such clients
			// waiting too).
			if p.waitAfterLogin(pe.Err) {
				continue
			}
		}
		return nil, err
	}
}

func (p *Pool) holdTimeout() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.HoldTimeout
}

func (p *Pool) acquireOnce(ctx context.Context, start time.Time) (*Conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if p.held && p.refusal != nil {
		err := p.refusal
		p.mu.Unlock()
		return nil, err
	}
	if !p.held && p.waiters.len() == 0 {
		if c := p.popIdleLocked(); c != nil {
			p.active++
			p.mu.Unlock()
			return c, nil
		}
		if p.total < p.cfg.Size {
			err, wait := p.loginBackoffLocked()
			if err != nil {
				p.mu.Unlock()
				return nil, err
			}
			if !wait && p.addSlotLocked() {
				p.dialing++
				p.mu.Unlock()
				return p.dialSlot(ctx)
			}
		}
	}
	// Waiters are recycled (channel included): under contention nearly
	// every acquisition waits, and it should not allocate.
	w := waiterPool.Get().(*waiter)
	now := time.Now()
	w.since, w.held, w.deadline = now, p.held, time.Time{}
	defer waiterPool.Put(w)
	limit := p.cfg.QueryWait
	if p.held {
		limit = max(p.cfg.HoldTimeout-now.Sub(start), time.Millisecond)
	} else if limit > 0 {
		// query_wait_timeout counts from the first try, across the
		// rounds of a refused login (Acquire).
		limit -= now.Sub(start)
		if limit <= 0 {
			err := p.queueWaitErrorLocked(p.cfg.QueryWait)
			p.mu.Unlock()
			return nil, err
		}
	}
	if limit > 0 {
		w.deadline = w.since.Add(limit)
		p.armExpiryLocked(w.deadline)
	}
	p.waiters.push(w)
	p.mu.Unlock()

	expired := false
	select {
	case g := <-w.ch:
		if !g.expired {
			return p.take(ctx, g)
		}
		expired = true
	case <-ctx.Done():
	}
	p.mu.Lock()
	if expired {
		// expire took it out of the queue.
		p.mu.Unlock()
	} else if !p.removeWaiterLocked(w) {
		// Granted while we gave up: honour the grant's bookkeeping.
		p.mu.Unlock()
		g := <-w.ch
		if g.c != nil {
			p.Put(g.c)
		} else if g.dial {
			p.mu.Lock()
			p.dropSlotLocked()
			p.dialing--
			p.serveLocked()
			p.mu.Unlock()
		}
	} else {
		p.mu.Unlock()
	}
	held := w.held
	if !expired && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if held {
		why := "no writable primary in time"
		p.mu.Lock()
		if p.holdNote != "" {
			why = p.holdNote
		}
		p.mu.Unlock()
		return nil, &Error{Code: "57P03", Msg: fmt.Sprintf(
			"pauseproxy: transaction held for %s (hold_timeout) while database %s was paused or changing primary; %s, try again",
			time.Since(start).Round(time.Millisecond), p.Name, why)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return nil, p.queueWaitErrorLocked(p.cfg.QueryWait)
}

// armExpiryLocked makes expire run by deadline d. Called with mu held.
func (p *Pool) armExpiryLocked(d time.Time) {
	if !p.expiryAt.IsZero() && !d.Before(p.expiryAt) {
		// Armed earlier already: with one limit for all, FIFO waiters'
		// deadlines come in order, so this is the common case and costs
		// no timer operation.
		return
	}
	p.expiryAt = d
	if p.expiry == nil {
		p.expiry = time.AfterFunc(time.Until(d), p.expire)
	} else {
		p.expiry.Reset(time.Until(d))
	}
}

// expire ends every wait whose deadline passed (the waiter returns
// hold_timeout's or query_wait_timeout's error) and arms itself for the
// next deadline.
func (p *Pool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expiryAt = time.Time{}
	if p.closed {
		return
	}
	next := p.waiters.expire(time.Now(), func(w *waiter) { w.ch <- grant{expired: true} })
	if !next.IsZero() {
		p.armExpiryLocked(next)
	}
}

func (p *Pool) take(ctx context.Context, g grant) (*Conn, error) {
	if g.err != nil {
		return nil, g.err
	}
	if g.c != nil {
		return g.c, nil
	}
	return p.dialSlot(ctx)
}

// dialSlot dials a connection into a slot already counted in total/dialing.
func (p *Pool) dialSlot(ctx context.Context) (*Conn, error) {
	p.mu.Lock()
	t := p.target
	timeout := p.cfg.ConnectTimeout
	p.mu.Unlock()
	dctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	srv, err := p.dial(dctx, t)
	p.mu.Lock()
	p.dialing--
	if err != nil {
		p.dropSlotLocked()
		p.loginFailedLocked(err)
		p.noteLoginLocked(t, err)
		p.serveLocked()
		p.mu.Unlock()
		return nil, loginError(err)
	}
	p.loginErr = nil
	p.noteLoginLocked(t, nil)
	c := p.newConnLocked(srv, t)
	if p.closed || t.Gen != p.target.Gen {
		// Retargeted (or closed) while dialing: never hand out a
		// connection of an old generation. The slot stays counted for
		// the new dial.
		p.mu.Unlock()
		c.close()
		<-c.done
		if p.isClosed() {
			p.mu.Lock()
			p.dropSlotLocked()
			p.mu.Unlock()
			return nil, ErrClosed
		}
		p.mu.Lock()
		p.dialing++
		p.mu.Unlock()
		return p.dialSlot(ctx)
	}
	p.active++
	p.mu.Unlock()
	return c, nil
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Pool) newConnLocked(srv *Server, t Target) *Conn {
	c := &Conn{
		ID:      p.nextID.Add(1),
		pool:    p,
		srv:     *srv,
		target:  t,
		created: time.Now(),
		// Server connections are few and carry the result sets: a
		// larger buffer means fewer reads.
		rd:     wire.NewReaderSize(srv.Conn, p.cfg.MaxMessageSize, 32<<10),
		done:   make(chan struct{}),
		params: make(map[string]string, len(srv.Params)),
	}
	for k, v := range srv.Params {
		c.params[k] = v
	}
	c.lastUsed = c.created
	if p.welcome == nil {
		p.welcome = srv.Params
	}
	p.conns.add(c)
	go c.readLoop()
	return c
}

// Put gives a connection back after its binding ended. Connections that
// broke, were retired, belong to an old generation, outlived
// server_lifetime, or exceed a shrunk pool size are closed.
func (p *Pool) Put(c *Conn) {
	if c.pool != p {
		// A session whose transaction ran on another pool of its
		// database (a replica's, for a read-only transaction) hands
		// the connection back where it came from.
		c.pool.Put(c)
		return
	}
	p.mu.Lock()
	if c.cancels > 0 {
		// Back once the cancel is done (cancelEnded).
		c.parked = true
		p.mu.Unlock()
		return
	}
	p.active--
	now := time.Now()
	discard := c.dead.Load() || c.retire.Load() || p.closed || c.target.Gen != p.target.Gen ||
		(p.cfg.Lifetime > 0 && now.Sub(c.created) >= p.cfg.Lifetime) ||
		p.total > p.cfg.Size+p.cfg.Reserve
	if discard {
		p.dropSlotLocked()
		p.serveLocked()
		p.mu.Unlock()
		c.close()
		return
	}
	c.mu.Lock()
	c.lastUsed = now
	c.mu.Unlock()
	if p.waiters.len() > 0 && !p.held {
		w := p.waiters.pop()
		p.active++
		w.ch <- grant{c: c}
		p.mu.Unlock()
		return
	}
	c.inIdle = true
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// cancelStarted notes a CancelRequest in flight for c.
func (p *Pool) cancelStarted(c *Conn) {
	p.mu.Lock()
	c.cancels++
	p.mu.Unlock()
}

// cancelEnded notes the end of a CancelRequest for c, and puts c back if
// it was released meanwhile.
func (p *Pool) cancelEnded(c *Conn) {
	p.mu.Lock()
	c.cancels--
	back := c.cancels == 0 && c.parked
	if back {
		c.parked = false
	}
	p.mu.Unlock()
	if back {
		p.Put(c)
	}
}

// popIdleLocked takes the most recently used live idle connection.
func (p *Pool) popIdleLocked() *Conn {
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		c.inIdle = false
		if c.dead.Load() || c.retire.Load() || c.target.Gen != p.target.Gen {
			p.dropSlotLocked()
			go c.close()
			continue
		}
		return c
	}
	return nil
}

// dropIdle forgets a connection that died while idle.
func (p *Pool) dropIdle(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !c.inIdle {
		return
	}
	for i, x := range p.idle {
		if x == c {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	c.inIdle = false
	p.dropSlotLocked()
	p.serveLocked()
}

// serveLocked hands free connections, or the right to dial, to waiters in
// arrival order.
func (p *Pool) serveLocked() {
	if p.held || p.closed {
		return
	}
	for p.waiters.len() > 0 {
		w := p.waiters.front()
		if c := p.popIdleLocked(); c != nil {
			p.active++
			w.ch <- grant{c: c}
		} else if p.total < p.limitLocked(w) && !p.limitsFullLocked() {
			if err, wait := p.loginBackoffLocked(); err != nil {
				w.ch <- grant{err: err}
			} else if wait {
				// A refused login is retried after
				// server_login_retry (retryLogin); meanwhile
				// waiters get released connections.
				return
			} else if p.addSlotLocked() {
				p.dialing++
				w.ch <- grant{dial: true}
			} else {
				return
			}
		} else {
			return
		}
		p.waiters.pop()
	}
}

// limitLocked is pool_size, plus reserve_pool_size once the first waiter
// has waited reserve_pool_timeout (PgBouncer's reserve pool).
func (p *Pool) limitLocked(w *waiter) int {
	if p.cfg.Reserve > 0 && time.Since(w.since) >= p.cfg.ReserveTimeout {
		return p.cfg.Size + p.cfg.Reserve
	}
	return p.cfg.Size
}

func (p *Pool) removeWaiterLocked(w *waiter) bool {
	return p.waiters.remove(w)
}

func addr(t Target) string { return fmt.Sprintf("%s:%d", t.Host, t.Port) }

func (p *Pool) serverError(c *Conn, code string) {
	if f := p.OnServerError; f != nil && code != "" {
		f(code, c.target.Gen)
	}
}
