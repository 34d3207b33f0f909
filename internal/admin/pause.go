package admin

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// PauseReason is the hold reason of PAUSE (see router.Database.Hold): one
// per database, whoever paused it (console, signal, HTTP), so that a
// RESUME from anywhere ends it and a role change's own hold is untouched.
const PauseReason = "pause"

// PauseOptions describe one PAUSE.
type PauseOptions struct {
	// Database to pause; "" pauses every database, including those
	// created later from the "*" entry (PgBouncer's PAUSE without
	// argument).
	Database string
	// Timeout bounds the wait for transactions in flight; 0 means
	// drain_timeout.
	Timeout time.Duration
	// Expire, when not 0, resumes traffic by itself that long after the
	// PAUSE was issued, unless a RESUME or another PAUSE came first.
	Expire time.Duration
	// Action on timeout: config.PauseTimeoutResume or
	// config.PauseTimeoutCancel; "" means pause_timeout_action.
	Action string
	// By says who asked, for the log ("console admin", "SIGUSR1", "http").
	By string
}

// PauseResult is what a successful PAUSE did.
type PauseResult struct {
	// Waited is how long the PAUSE waited for transactions in flight.
	Waited time.Duration
	// Cancelled and Closed count what a timeout with action "cancel" did:
	// cancel requests sent (one per transaction in flight), then server
	// connections closed (those a cancel did not free, such as a session
	// idle in transaction).
	Cancelled, Closed int
}

// PauseError is a PAUSE that did not end paused, with the SQLSTATE the
// console reports.
type PauseError struct {
	Code string
	Msg  string
}

func (e *PauseError) Error() string { return e.Msg }

// Pauser runs PAUSE and RESUME for the console, the signals and HTTP.
//
// A PAUSE holds new transactions of its databases at once (they queue, in
// arrival order, bounded by hold_timeout each) and returns when the
// transactions in flight have finished, or after its timeout: then,
// following pause_timeout_action, it either releases the hold again and
// fails ("resume"), or cancels the stragglers' queries, closes their server
// connections if that is not enough, and succeeds ("cancel").
//
// PAUSE and RESUME are idempotent and may come from several sessions at
// once. Every PAUSE takes a new generation; a timeout or an expiry acts
// only if its generation is still the latest for that database, so a
// late timer never undoes a newer PAUSE, and a RESUME ends the pause
// whatever issued it.
//
// Lock order: Pauser.mu, then router locks (Router.mu, Database.mu).
type Pauser struct {
	r      *router.Router
	events *Events
	log    *slog.Logger

	mu     sync.Mutex // guards the fields below
	gen    uint64
	all    *pause            // the proxy-wide pause, nil when none
	dbs    map[string]*pause // pauses of one database
	closed bool
}

// pause is one paused scope: one database, or all of them.
type pause struct {
	gen      uint64
	since    time.Time
	expireAt time.Time // zero: no expiry
	timer    *time.Timer
}

// pollInterval is how often a PAUSE looks whether transactions in flight
// have finished: short next to a transaction, long next to the cost of
// counting (one pool mutex per pool).
const pollInterval = 10 * time.Millisecond

// cancelGrace is how long a PAUSE whose timeout action is "cancel" waits
// after cancelling queries before it closes the server connections still
// busy (an idle-in-transaction session ignores a cancel).
const cancelGrace = 2 * time.Second

// NewPauser returns a Pauser for r. events and log may be nil.
func NewPauser(r *router.Router, events *Events, log *slog.Logger) *Pauser {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pauser{r: r, events: events, log: log, dbs: make(map[string]*pause)}
}

// Pause pauses o.Database (or everything) and waits for the transactions
// in flight, as described on Pauser. ctx ends the wait early (the pause
// stays). The error is a *PauseError, ctx's error, or a *PauseError for an
// unknown database.
func (p *Pauser) Pause(ctx context.Context, o PauseOptions) (PauseResult, error) {
	px := p.r.Config().Proxy
	if o.Timeout <= 0 {
		o.Timeout = px.DrainTimeout
	}
	if o.Action == "" {
		o.Action = px.PauseTimeoutAction
	}
	gen, err := p.begin(o)
	if err != nil {
		return PauseResult{}, err
	}
	scope := scopeName(o.Database)
	p.log.Info("PAUSE: holding new transactions, waiting for those in flight",
		slog.String("database", scope), slog.String("by", o.By),
		slog.Duration("timeout", o.Timeout), slog.Duration("expire", o.Expire))

	start := time.Now()
	res := PauseResult{}
	active, err := p.drain(ctx, o.Database, start.Add(o.Timeout))
	res.Waited = time.Since(start)
	switch {
	case err != nil:
		p.events.Add(Event{Kind: EventPause, Database: o.Database, Reason: PauseReason, Duration: res.Waited, Outcome: "interrupted", Detail: err.Error()})
		return res, err
	case active == 0:
		p.events.Add(Event{Kind: EventPause, Database: o.Database, Reason: PauseReason, Duration: res.Waited, Outcome: "paused", Detail: o.By})
		p.log.Info("PAUSE: paused", slog.String("database", scope), slog.Duration("waited", res.Waited))
		return res, nil
	}

	// Timed out with transactions still running.
	if o.Action == config.PauseTimeoutCancel {
		res.Cancelled, res.Closed = p.stopStragglers(ctx, o.Database)
		res.Waited = time.Since(start)
		detail := fmt.Sprintf("timed out with %d transactions running: %d cancel requests sent, %d server connections closed", active, res.Cancelled, res.Closed)
		p.events.Add(Event{Kind: EventPause, Database: o.Database, Reason: PauseReason, Duration: res.Waited, Outcome: "cancelled", Detail: detail})
		p.log.Warn("PAUSE: timed out; stragglers cancelled", slog.String("database", scope), slog.Int("cancelled", res.Cancelled), slog.Int("closed", res.Closed))
		return res, nil
	}
	released := p.releaseIf(o.Database, gen, "timeout")
	msg := fmt.Sprintf("PAUSE %s timed out after %s with %d transactions still running", scope, o.Timeout, active)
	if released {
		msg += "; traffic resumed (pause_timeout_action = resume)"
	} else {
		msg += "; the database stays paused by a later PAUSE"
	}
	p.events.Add(Event{Kind: EventPause, Database: o.Database, Reason: PauseReason, Duration: res.Waited, Outcome: "timeout", Detail: msg})
	p.log.Warn("PAUSE: timed out", slog.String("database", scope), slog.Int("active", active), slog.Bool("released", released))
	// 57014 query_canceled: the PAUSE gave up, as a statement_timeout does.
	return res, &PauseError{Code: "57014", Msg: msg}
}

// Hold pauses db (or everything) without waiting for the transactions in
// flight (KILL does this before closing them).
func (p *Pauser) Hold(db, by string) error {
	_, err := p.begin(PauseOptions{Database: db, By: by})
	return err
}

// begin sets up the pause and holds new transactions. It returns the
// pause's generation.
func (p *Pauser) begin(o PauseOptions) (uint64, error) {
	var d *router.Database
	if o.Database != "" {
		var ok bool
		if d, ok = p.r.Database(o.Database); !ok {
			return 0, &PauseError{Code: "3D000", Msg: "no such database: " + o.Database}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, &PauseError{Code: "57P01", Msg: "pauseproxy is shutting down"}
	}
	p.gen++
	gen := p.gen
	ps := p.all
	if d != nil {
		ps = p.dbs[o.Database]
	}
	if ps == nil {
		ps = &pause{since: time.Now()}
		if d != nil {
			p.dbs[o.Database] = ps
		} else {
			p.all = ps
		}
	}
	ps.gen = gen
	// The latest PAUSE decides the expiry: a PAUSE without EXPIRE makes
	// the pause indefinite again.
	if ps.timer != nil {
		ps.timer.Stop()
		ps.timer, ps.expireAt = nil, time.Time{}
	}
	if o.Expire > 0 {
		ps.expireAt = time.Now().Add(o.Expire)
		name := o.Database
		ps.timer = time.AfterFunc(o.Expire, func() { p.expire(name, gen) })
	}
	if d != nil {
		d.Hold(PauseReason)
	} else {
		p.r.HoldNew(PauseReason, true)
		for _, db := range p.r.Databases() {
			db.Hold(PauseReason)
		}
	}
	return gen, nil
}

// drain waits until the paused databases have no transaction in flight, or
// until deadline. It returns how many are still running.
func (p *Pauser) drain(ctx context.Context, db string, deadline time.Time) (int, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		n, paused := p.inFlight(db)
		if !paused {
			return n, &PauseError{Code: "57014", Msg: fmt.Sprintf("PAUSE %s interrupted: a RESUME came first", scopeName(db))}
		}
		if n == 0 || !time.Now().Before(deadline) {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-t.C:
		}
	}
}

// inFlight counts the transactions in flight on the databases db's pause
// holds, and reports whether the pause is still on.
func (p *Pauser) inFlight(db string) (int, bool) {
	p.mu.Lock()
	on := p.all != nil
	if db != "" {
		on = p.dbs[db] != nil
	}
	p.mu.Unlock()
	n := 0
	for _, d := range p.paused(db) {
		n += d.Active()
	}
	return n, on
}

// paused returns the databases held by PAUSE that db's pause covers.
func (p *Pauser) paused(db string) []*router.Database {
	var out []*router.Database
	for _, d := range p.r.Databases() {
		if (db == "" || d.Name == db) && heldBy(d, PauseReason) {
			out = append(out, d)
		}
	}
	return out
}

// stopStragglers cancels the queries of the sessions still bound to a
// server on the paused databases, waits cancelGrace, then closes the
// server connections of those still busy (their clients get an error and
// stay connected).
func (p *Pauser) stopStragglers(ctx context.Context, db string) (cancelled, closed int) {
	dbs := p.paused(db)
	var wg sync.WaitGroup
	for _, d := range dbs {
		for _, s := range p.r.SessionsOf(d.Name) {
			if s.Info().Server == nil {
				continue
			}
			cancelled++
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.r.Cancel(s.Key)
			}()
		}
	}
	wg.Wait()
	if n, _ := p.drain(ctx, db, time.Now().Add(cancelGrace)); n == 0 {
		return cancelled, 0
	}
	for _, d := range dbs {
		for _, pl := range d.Pools() {
			for _, ci := range pl.Conns() {
				if ci.Handler != nil {
					ci.Conn.Retire()
					ci.Conn.Kill()
					closed++
				}
			}
		}
	}
	p.drain(ctx, db, time.Now().Add(cancelGrace))
	return cancelled, closed
}

// Resume ends the pause of db, or of everything when db is "" (the
// proxy-wide pause and every database's). It reports whether anything was
// paused; resuming what is not paused is not an error.
func (p *Pauser) Resume(db, by string) (bool, error) {
	if db != "" {
		if _, ok := p.find(db); !ok {
			return false, &PauseError{Code: "3D000", Msg: "no such database: " + db}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	was := false
	if db == "" {
		for _, d := range p.r.Databases() {
			was = was || heldBy(d, PauseReason)
		}
		if p.all != nil {
			p.endLocked("", "resumed", false)
		}
		for name := range p.dbs {
			p.endLocked(name, "resumed", false)
		}
		p.r.HoldNew(PauseReason, false)
		for _, d := range p.r.Databases() {
			d.Unhold(PauseReason)
		}
	} else {
		d, _ := p.find(db)
		was = heldBy(d, PauseReason)
		if p.dbs[db] != nil {
			p.endLocked(db, "resumed", false)
		} else if was && p.all != nil {
			// Paused by the proxy-wide PAUSE: this database goes on, the
			// others stay paused.
			p.events.Add(Event{Kind: EventResume, Database: db, Reason: PauseReason, Duration: time.Since(p.all.since), Outcome: "resumed"})
		}
		d.Unhold(PauseReason)
	}
	if was {
		p.log.Info("RESUME: traffic released", slog.String("database", scopeName(db)), slog.String("by", by))
	}
	return was, nil
}

// expire is a pause's EXPIRE timer.
func (p *Pauser) expire(db string, gen uint64) {
	if p.releaseIf(db, gen, "expired") {
		p.log.Warn("PAUSE expired: traffic resumed by itself", slog.String("database", scopeName(db)))
	}
}

// releaseIf ends db's pause (or the proxy-wide one) if gen is still its
// latest generation, and reports whether it did. A database that another
// pause covers stays held.
func (p *Pauser) releaseIf(db string, gen uint64, outcome string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.all
	if db != "" {
		ps = p.dbs[db]
	}
	if p.closed || ps == nil || ps.gen != gen {
		return false
	}
	p.endLocked(db, outcome, true)
	return true
}

// endLocked forgets a pause and records its end. With unhold, it also
// releases the databases it held that no other pause covers.
func (p *Pauser) endLocked(db, outcome string, unhold bool) {
	ps := p.all
	if db != "" {
		ps = p.dbs[db]
		delete(p.dbs, db)
	} else {
		p.all = nil
	}
	if ps.timer != nil {
		ps.timer.Stop()
	}
	p.events.Add(Event{Kind: EventResume, Database: db, Reason: PauseReason, Duration: time.Since(ps.since), Outcome: outcome})
	if !unhold {
		return
	}
	if db != "" {
		if p.all == nil {
			if d, ok := p.find(db); ok {
				d.Unhold(PauseReason)
			}
		}
		return
	}
	p.r.HoldNew(PauseReason, false)
	for _, d := range p.r.Databases() {
		if p.dbs[d.Name] == nil {
			d.Unhold(PauseReason)
		}
	}
}

// PausedAll reports whether the proxy-wide pause is on (SHOW STATE).
func (p *Pauser) PausedAll() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all != nil
}

// PauseState is one pause in force.
type PauseState struct {
	Database string // "" for the proxy-wide pause
	Since    time.Time
	ExpireAt time.Time // zero: no expiry
}

// State returns the pauses in force, the proxy-wide one first.
func (p *Pauser) State() []PauseState {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []PauseState
	if p.all != nil {
		out = append(out, PauseState{Since: p.all.since, ExpireAt: p.all.expireAt})
	}
	names := make([]string, 0, len(p.dbs))
	for name := range p.dbs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		ps := p.dbs[name]
		out = append(out, PauseState{Database: name, Since: ps.since, ExpireAt: ps.expireAt})
	}
	return out
}

// Close stops the expiry timers; pauses in force stay. Later PAUSEs fail.
func (p *Pauser) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.all != nil && p.all.timer != nil {
		p.all.timer.Stop()
	}
	for _, ps := range p.dbs {
		if ps.timer != nil {
			ps.timer.Stop()
		}
	}
}

// find returns an existing database without creating one from "*".
func (p *Pauser) find(name string) (*router.Database, bool) {
	for _, d := range p.r.Databases() {
		if d.Name == name {
			return d, true
		}
	}
	return nil, false
}

// heldBy reports whether d is held for reason.
func heldBy(d *router.Database, reason string) bool {
	_, reasons := d.Held()
	return slices.Contains(reasons, reason)
}

// scopeName names a pause's scope in messages.
func scopeName(db string) string {
	if db == "" {
		return "(all databases)"
	}
	return db
}
