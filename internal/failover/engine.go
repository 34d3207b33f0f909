// Package failover runs the role-change cycle of each database: it watches
// a discovery source and the router's trouble signals, holds new
// transactions while the primary moves, verifies that the node the source
// names accepts writes, points the pools there in a new generation, and
// releases the held transactions.
//
// The cycle, per database:
//
//  1. Trigger: the source names another primary or none, announces a
//     planned switchover (Patroni's failover key, through Consul), or a
//     server connection reports the primary going away (57P01, 57P02,
//     57P03, 25006, a lost connection, a failed dial).
//  2. Hold: new transactions wait at the transaction boundary
//     (router.Database.Hold); transactions already running go on until
//     they end or their server dies.
//  3. Verify: connect to the named node and require
//     pg_is_in_recovery() = false, polling fast until it holds. Each new
//     server connection is checked again when it is dialed (fencing), so
//     no transaction reaches a node that was not writable.
//  4. Retarget and release: the pools move to the verified node in a new
//     generation (connections of the old one close as they are released),
//     and held transactions go on in arrival order.
//
// A planned switchover is held before it happens: the old primary is still
// writable when Patroni writes its failover key, so the cycle holds new
// transactions at once, lets those running finish there, and waits for the
// source to name the new primary before it verifies anything. Patroni
// then stops the old primary with nothing of ours in flight, and explicit
// transactions survive a switchover nobody told the proxy about. If the
// source names no new primary within PlannedTimeout (Patroni refused, or
// a long checkpoint), or the request disappears, the cycle goes on as any
// other: verify what the source names, release.
//
// Each held transaction waits at most hold_timeout (the pool enforces it,
// answering 57P03). The engine itself keeps trying until a primary is
// verified or it is stopped.
//
// Before a release to a new primary the previous one is checked: while it
// still accepts writes (split brain) the cycle holds or follows per
// on_split_brain (splitbrain.go). A check whose login the server refuses
// for a reason waiting cannot heal (wrong password, missing database,
// certificate) fails the held clients at once with that reason
// (router.Database.RefuseLogins) instead of letting them wait out
// hold_timeout. The Manager also sizes hold_timeout against Patroni's
// ttl and loop_wait (timings.go).
//
// Not every database has an engine: one whose target_session_attrs is
// "any" has none (PgBouncer's behaviour), and one that reads from
// replicas (read-only, standby, prefer-standby) has a ReadWatcher instead,
// which hands the router the usable replicas (reads.go) and never holds
// for a role change. A read-write database with read_only_routing =
// "replica" has both, on one source. /readyz (ready.go) asks each database
// for its own target role.
//
// This package decides when traffic is held; it does not speak the
// protocol to clients, and it does not ask Patroni to do anything (see
// package ops for switchover).
package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// Event describes a finished cycle, for the event log and metrics.
type Event struct {
	Database string
	From, To string        // addresses, "" when none
	Held     time.Duration // how long new transactions were held
	Outcome  string        // "released", "stopped"
	Reason   string        // what started the cycle
	// Planned is set when the cycle began with a planned switchover
	// announced by the source (Patroni's failover key) rather than with
	// a change already made.
	Planned bool
}

// Options tunes an Engine. The zero value gives the defaults.
type Options struct {
	// FastInterval is how often a cycle re-checks the candidate (default
	// 100ms).
	FastInterval time.Duration
	// VerifyTimeout bounds one verification (default 2s).
	VerifyTimeout time.Duration
	// PlannedTimeout bounds how long a planned switchover holds traffic
	// on the old primary's account before the source names the new one
	// (default 10s).
	PlannedTimeout time.Duration
	// HoldTimeout is the proxy's hold_timeout: a hold without a usable
	// primary that lasts longer is logged as an ERROR (escalate.go).
	HoldTimeout time.Duration
	// WarnAfter is how long a hold without a usable primary is logged
	// at INFO before WARN (default 10s); NoPrimaryLogInterval how often
	// it is logged (default 2s).
	WarnAfter            time.Duration
	NoPrimaryLogInterval time.Duration
	// ReadOnly skips the writability check (the target is a replica on
	// purpose).
	ReadOnly bool
	// OnSplitBrain is on_split_brain: "hold" (the default) or "follow"
	// (see splitbrain.go).
	OnSplitBrain string
	Log          *slog.Logger
	// OnEvent, when set, is called after each cycle.
	OnEvent func(Event)
}

// Engine runs the cycle for one database.
type Engine struct {
	db   *router.Database
	src  discovery.Source
	opts Options
	log  *slog.Logger

	mu         sync.Mutex // guards the fields below
	verified   string     // address verified writable in the current generation ("" none)
	lastChange time.Time
	cycling    bool
	cycleStart time.Time
	lastErr    error
	srcErrors  uint64 // discovery answers that carried an error
	verifyFail uint64 // verifications of a candidate that failed (then retried)
	lastSrcErr error
	planned    string // the source's Planned value a cycle was started for
	refusal    string // the login refusal last logged (noteRefusal)
	// previous is the primary of the last release (kept across cycles),
	// splitOld the previous primary found still accepting writes after
	// a change (nil: none), onSplitBrain the action (splitbrain.go).
	previous     *discovery.Member
	splitOld     *discovery.Member
	onSplitBrain string
}

// New returns an engine for db fed by src. Call Run.
func New(db *router.Database, src discovery.Source, opts Options) *Engine {
	if opts.FastInterval <= 0 {
		opts.FastInterval = 100 * time.Millisecond
	}
	if opts.VerifyTimeout <= 0 {
		opts.VerifyTimeout = 2 * time.Second
	}
	if opts.WarnAfter <= 0 {
		opts.WarnAfter = defaultWarnAfter
	}
	if opts.NoPrimaryLogInterval <= 0 {
		opts.NoPrimaryLogInterval = defaultNoPrimaryInterval
	}
	if opts.PlannedTimeout <= 0 {
		opts.PlannedTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{db: db, src: src, opts: opts, log: opts.Log.With(slog.String("database", db.Name))}
	e.SetOnSplitBrain(opts.OnSplitBrain)
	return e
}

// Status is what the engine knows now.
type Status struct {
	Snapshot   *discovery.Snapshot
	Verified   string // the verified writable primary, "" while none
	Cycling    bool   // a cycle is under way (traffic held)
	Since      time.Time
	LastChange time.Time
	LastErr    error
	// SourceErrors counts the discovery errors the engine saw (each new
	// one once); VerifyFailures the failed checks of a candidate, each
	// followed by another try.
	SourceErrors, VerifyFailures uint64
	// SplitBrain is set while more than one node accepts writes: the
	// previous primary after a change (SplitBrainNode), or the hosts of
	// a static source.
	SplitBrain     bool
	SplitBrainNode string
}

// Status returns the engine's current view.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	snap := e.src.Snapshot()
	return Status{
		Snapshot: snap, Verified: e.verified, Cycling: e.cycling,
		Since: e.cycleStart, LastChange: e.lastChange, LastErr: e.lastErr,
		SourceErrors: e.srcErrors, VerifyFailures: e.verifyFail,
		SplitBrain:     e.splitOld != nil || (snap != nil && errors.Is(snap.Err, discovery.ErrSplitBrain)),
		SplitBrainNode: addrOf(e.splitOld),
	}
}

// Run watches the source and the database until ctx is done. The database
// must have been handed over with db.Manage() (held until the first
// primary is verified).
func (e *Engine) Run(ctx context.Context) {
	go e.src.Run(ctx)
	e.cycle(ctx, "startup", false)
	for ctx.Err() == nil {
		snap := e.src.Snapshot()
		changed := e.src.Changed()
		if reason, planned := e.needsCycle(snap); reason != "" {
			e.cycle(ctx, reason, planned)
			continue
		}
		var recheck <-chan time.Time
		if e.splitBrainOld() != nil {
			recheck = time.After(splitBrainRecheck)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-e.db.Trouble():
			e.cycle(ctx, "server trouble", false)
		case <-recheck:
			e.recheckSplitBrain(ctx)
		}
	}
}

// needsCycle says why the snapshot calls for a cycle, or "", and whether
// it is a planned switchover announced ahead.
func (e *Engine) needsCycle(snap *discovery.Snapshot) (reason string, planned bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	verified := e.verified
	e.noteSourceLocked(snap)
	if snap.Planned == "" {
		e.planned = ""
	}
	switch {
	case snap.Primary == nil && snap.Err == nil:
		return "no primary named", false
	case snap.Primary == nil && errors.Is(snap.Err, discovery.ErrSplitBrain):
		// Two nodes say they are writable: never guess, hold.
		return "split brain", false
	case snap.Primary == nil:
		// The source cannot be reached: keep serving the verified
		// primary; trouble from the servers themselves starts a cycle.
		return "", false
	case snap.Primary.Addr() != verified:
		return fmt.Sprintf("primary named %s", snap.Primary.Addr()), false
	case snap.Planned != "" && snap.Planned != e.planned:
		// Once per request: a request that outlives its cycle (see
		// PlannedTimeout) does not hold traffic again.
		e.planned = snap.Planned
		return "switchover requested " + snap.Planned, true
	}
	return "", false
}

// cycle holds the database until the source's primary is verified
// writable, then retargets and releases. A planned cycle first waits for
// the source to name another primary (see the package doc).
func (e *Engine) cycle(ctx context.Context, reason string, planned bool) {
	start := time.Now()
	wasPlanned := planned
	e.db.Hold(router.HoldRoleChange)
	e.src.Hurry()
	e.mu.Lock()
	from := e.verified
	e.verified = ""
	e.cycling, e.cycleStart = true, start
	e.mu.Unlock()
	e.log.Info("role change: holding new transactions", slog.String("reason", reason), slog.String("from", from))
	// Drain pending trouble signals: they are what this cycle handles.
	select {
	case <-e.db.Trouble():
	default:
	}
	tick := time.NewTicker(e.opts.FastInterval)
	defer tick.Stop()
	var refusedAt time.Time // when a check last found a refusal that waiting cannot heal
	var splitAt time.Time   // when a check last found the previous primary still writable
	lastLog := time.Time{}  // when the held database was last logged (escalating)
	plannedUntil := start.Add(e.opts.PlannedTimeout)
	for {
		snap := e.src.Snapshot()
		changed := e.src.Changed()
		if planned {
			switch {
			case snap.Primary == nil || snap.Primary.Addr() != from:
				planned = false // it moves: verify the new one
			case snap.Planned == "":
				planned = false // withdrawn or refused: back to the old one
				e.log.Info("role change: switchover request gone, primary unchanged", slog.String("primary", from))
			case time.Now().After(plannedUntil):
				planned = false
				e.log.Warn("role change: switchover requested but no new primary named in time; releasing to the current primary (transactions running when it stops will fail)",
					slog.String("primary", from), slog.Duration("waited", e.opts.PlannedTimeout))
			}
		}
		// A refused login, and a split brain, are checked again once a
		// second, not at the fast interval: a wrong password should not
		// flood the server's log, nor a split brain both servers with
		// connections.
		if p := snap.Primary; p != nil && !planned && time.Since(refusedAt) >= refusedRetry && time.Since(splitAt) >= splitBrainRecheck {
			err := e.verify(ctx, p)
			refused := e.db.RefuseLogins(err)
			if refused {
				refusedAt = time.Now()
				e.noteRefusal(err)
			} else {
				e.noteRefusal(nil)
			}
			if err == nil && e.splitBrainHolds(ctx, p) {
				splitAt = time.Now()
				err = fmt.Errorf("split brain: the previous primary %s still accepts writes (on_split_brain = hold)", addrOf(e.splitBrainOld()))
			} else if err == nil {
				e.release(p, from, start, reason, wasPlanned)
				return
			}
			e.mu.Lock()
			e.lastErr = err
			e.verifyFail++
			e.noteSourceLocked(snap)
			e.mu.Unlock()
			if !refused && time.Since(lastLog) > e.opts.NoPrimaryLogInterval {
				e.logNoPrimary(time.Since(start), p.Addr(), err)
				lastLog = time.Now()
			}
		} else if snap.Primary == nil && time.Since(lastLog) > e.opts.NoPrimaryLogInterval && time.Since(start) > e.opts.NoPrimaryLogInterval {
			e.logNoPrimary(time.Since(start), "", snap.Err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			e.mu.Lock()
			e.cycling = false
			e.mu.Unlock()
			e.emit(Event{Database: e.db.Name, From: from, Held: time.Since(start), Outcome: "stopped", Reason: reason, Planned: wasPlanned})
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// refusedRetry is how often a cycle checks a candidate again after it
// refused the login for a reason that waiting cannot heal.
const refusedRetry = time.Second

// noteRefusal logs a refused check once per change of its reason (not
// once per check, nor per client), and its end.
func (e *Engine) noteRefusal(err error) {
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	e.mu.Lock()
	prev := e.refusal
	e.refusal = reason
	e.mu.Unlock()
	switch {
	case reason == prev:
	case err != nil:
		e.log.Error("role change: the server refused the proxy's login; held clients get this error until it is fixed",
			slog.Any("err", err))
	default:
		e.log.Info("role change: the server no longer refuses the proxy's login", slog.String("was", prev))
	}
}

// verify checks that p accepts writes. With no server login known yet it
// trusts the source: every new connection is checked when dialed anyway.
func (e *Engine) verify(ctx context.Context, p *discovery.Member) error {
	if e.opts.ReadOnly {
		return nil
	}
	vctx, cancel := context.WithTimeout(ctx, e.opts.VerifyTimeout)
	defer cancel()
	ok, err := e.db.Probe(vctx, p.Host, p.Port)
	if errors.Is(err, router.ErrNoLogin) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", p.Addr(), err)
	}
	if !ok {
		return fmt.Errorf("verify %s: in recovery", p.Addr())
	}
	return nil
}

// release points the pools at the verified primary in a new generation
// and lets the held transactions go.
func (e *Engine) release(p *discovery.Member, from string, start time.Time, reason string, planned bool) {
	to := p.Addr()
	// Trouble signalled during the cycle came from connections to the
	// old primary (none to p exist before Retarget): the cycle handled
	// it. After Retarget those connections are of an older generation
	// and no longer signal.
	select {
	case <-e.db.Trouble():
	default:
	}
	e.db.Retarget(p.Host, p.Port)
	e.db.SetHoldNote("")
	e.mu.Lock()
	prev := *p
	e.previous = &prev
	e.verified = to
	e.cycling = false
	e.lastErr = nil
	if to != from {
		e.lastChange = time.Now()
	}
	e.mu.Unlock()
	e.db.Unhold(router.HoldRoleChange)
	held := time.Since(start)
	e.log.Info("role change: released", slog.String("primary", to), slog.String("from", from), slog.Duration("held", held))
	e.emit(Event{Database: e.db.Name, From: from, To: to, Held: held, Outcome: "released", Reason: reason, Planned: planned})
}

func (e *Engine) emit(ev Event) {
	if e.opts.OnEvent != nil {
		e.opts.OnEvent(ev)
	}
}

// noteSourceLocked counts a discovery error the engine has not seen yet.
func (e *Engine) noteSourceLocked(snap *discovery.Snapshot) {
	if snap.Err != nil && (e.lastSrcErr == nil || e.lastSrcErr.Error() != snap.Err.Error()) {
		e.srcErrors++
	}
	e.lastSrcErr = snap.Err
}
