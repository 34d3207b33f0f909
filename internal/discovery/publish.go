package discovery

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Errors a snapshot can carry.
var (
	// ErrNoAnswer is the Err of the snapshot a source holds before its
	// first answer.
	ErrNoAnswer = errors.New("discovery: no answer from the source yet")
	// ErrSplitBrain is wrapped by the Err of a static snapshot when more
	// than one host accepts writes.
	ErrSplitBrain = errors.New("split brain: more than one host accepts writes")
)

// view is what one poll found, before the publisher numbers it.
type view struct {
	Endpoint string
	Primary  *Member
	Replicas []Member
	Changing bool
	Planned  string
}

// publisher holds the latest snapshot of one source and wakes watchers
// when it changes. Every source embeds one; it implements Snapshot, Changed
// and Hurry of [Source].
type publisher struct {
	source string
	log    *slog.Logger
	// hurry has room for one request: Hurry never blocks, and many calls
	// before the poller looks count as one.
	hurry chan struct{}

	mu      sync.Mutex // guards the fields below
	snap    *Snapshot
	changed chan struct{}
	failing bool // an error has been logged and no success since
}

func newPublisher(source string, log *slog.Logger) *publisher {
	return &publisher{
		source:  source,
		log:     log.With("source", source),
		hurry:   make(chan struct{}, 1),
		snap:    &Snapshot{Source: source, Err: ErrNoAnswer},
		changed: make(chan struct{}),
	}
}

// Snapshot returns the latest snapshot, never nil.
func (p *publisher) Snapshot() *Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap
}

// Changed returns a channel closed at the next material change: of the
// primary, of any member's name, address, role, state or timeline, of
// Changing, or of whether Err is set. A poll that only refreshes Updated,
// Endpoint or replication lag replaces the snapshot without closing it.
func (p *publisher) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Hurry asks the poller to poll now and fast for a while.
func (p *publisher) Hurry() {
	select {
	case p.hurry <- struct{}{}:
	default:
	}
}

// update publishes the result of a poll: v with Err set to err, or, when v
// is nil (no answer), the previous members with Err set (stale, as Updated
// tells). It reports
// whether the primary changed, and whether anything material did (see
// Changed).
func (p *publisher) update(v *view, err error) (snap *Snapshot, primaryChanged, material bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.snap
	next := &Snapshot{Source: p.source, Generation: prev.Generation}
	if v == nil {
		*next = *prev
		if err == nil {
			err = ErrNoAnswer
		}
	} else {
		next.Endpoint = v.Endpoint
		next.Primary = v.Primary
		next.Replicas = v.Replicas
		next.Changing = v.Changing
		next.Planned = v.Planned
		next.Updated = time.Now()
	}
	next.Err = err
	primaryChanged = primaryKey(prev.Primary) != primaryKey(next.Primary)
	if primaryChanged {
		next.Generation++
	}
	p.snap = next
	material = primaryChanged || !sameMembers(prev, next)
	if material {
		close(p.changed)
		p.changed = make(chan struct{})
	}
	p.logLocked(prev, next, primaryChanged)
	return next, primaryChanged, material
}

// pollLoop calls poll and publishes its result until ctx is done: every
// Interval, or every FastInterval while the snapshot says Changing and for
// FastPeriod after Hurry or a material change.
func (p *publisher) pollLoop(ctx context.Context, o Options, poll func(context.Context) (*view, error)) {
	var fastUntil time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		v, err := poll(ctx)
		if ctx.Err() != nil {
			return
		}
		snap, _, material := p.update(v, err)
		now := time.Now()
		if material {
			fastUntil = now.Add(o.FastPeriod)
		}
		wait := o.Interval
		if snap.Changing || now.Before(fastUntil) {
			wait = o.FastInterval
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.hurry:
			fastUntil = time.Now().Add(o.FastPeriod)
		}
	}
}

func (p *publisher) logLocked(prev, next *Snapshot, primaryChanged bool) {
	switch {
	case next.Err != nil && !p.failing:
		p.failing = true
		p.log.Warn("discovery failing", "err", next.Err, "last_success", next.Updated)
	case next.Err == nil && p.failing:
		p.failing = false
		p.log.Info("discovery recovered", "endpoint", next.Endpoint)
	}
	if primaryChanged {
		p.log.Info("primary changed",
			"generation", next.Generation,
			"primary", describe(next.Primary),
			"previous", describe(prev.Primary),
			"changing", next.Changing,
			"endpoint", next.Endpoint)
	} else if prev.Changing != next.Changing {
		p.log.Debug("change under way", "changing", next.Changing, "primary", describe(next.Primary))
	}
}

// primaryKey identifies a primary for Generation: its name and address.
func primaryKey(m *Member) string {
	if m == nil {
		return ""
	}
	return m.Name + "@" + m.Addr()
}

func describe(m *Member) string {
	if m == nil {
		return "none"
	}
	return primaryKey(m)
}

// sameMembers reports whether a and b differ in nothing a watcher acts on.
func sameMembers(a, b *Snapshot) bool {
	if a.Changing != b.Changing || a.Planned != b.Planned || (a.Err == nil) != (b.Err == nil) {
		return false
	}
	if (a.Primary == nil) != (b.Primary == nil) || (a.Primary != nil && !sameMember(*a.Primary, *b.Primary)) {
		return false
	}
	return slices.EqualFunc(a.Replicas, b.Replicas, sameMember)
}

func sameMember(a, b Member) bool {
	a.LagBytes, b.LagBytes = 0, 0
	a.ReplayDelay, b.ReplayDelay = 0, 0
	return a == b
}
