package admin

import (
	"sync"
	"time"
)

// Kinds of Event.
const (
	// EventPause is a PAUSE that returned: Duration is how long it waited
	// for transactions in flight, Outcome "paused", "timeout" (released
	// again), "cancelled" (stragglers cancelled) or "interrupted" (a
	// RESUME came first).
	EventPause = "pause"
	// EventResume is the end of a pause: Duration is how long traffic was
	// held, Outcome "resumed" (RESUME, SIGUSR2, HTTP), "expired" (its
	// EXPIRE passed) or "timeout" (the PAUSE gave up).
	EventResume = "resume"
	// EventHold is the end of another hold (Reason names it, for example
	// "role-change"): Duration is how long traffic was held.
	EventHold = "hold"
	// EventRoleChange is the end of a role-change cycle: From and To are
	// the primary's addresses before and after ("" when none; equal after
	// a restart in place), Duration how long new transactions were held,
	// Reason the hold's reason (HoldRoleChange, or HoldSwitchover when
	// the cycle began with a planned switchover), Outcome "released" or
	// "stopped", Detail a summary for SHOW EVENTS.
	EventRoleChange = "role_change"
	// EventSwitchover is a SWITCHOVER that finished, well or not.
	EventSwitchover = "switchover"
	// EventCommand is any other console command that changes something
	// (KILL, RECONNECT, DISABLE, SET, RELOAD, ...), for the audit trail:
	// Reason is the command, Detail who ran it.
	EventCommand = "command"
)

// Event is one entry of the event log (SHOW EVENTS, metrics).
type Event struct {
	Time     time.Time // when it ended, or happened
	Kind     string    // one of the Event* kinds
	Database string    // "" when it concerns every database
	Reason   string    // hold reason or command
	Duration time.Duration
	Outcome  string
	Detail   string
	From, To string // EventRoleChange: the primary's addresses
}

// Hold reasons besides PauseReason (admin) and router.HoldRoleChange
// ("role-change"), as the hold duration metric labels them.
const (
	// HoldSwitchover is a role-change hold that began with a planned
	// switchover announced by the discovery source.
	HoldSwitchover = "switchover"
)

// Events is a bounded log of recent events, oldest dropped first. Anything
// may Add to it (the console, the pause logic, the role-change engine);
// subscribers (metrics) see each event as it is added. A nil *Events
// records nothing. Safe for concurrent use.
type Events struct {
	mu   sync.Mutex // guards the fields below; subscribers run without it
	ring []Event
	next int // where the next event goes
	full bool
	subs []func(Event)
}

// DefaultEventsCapacity is how many events NewEvents(0) keeps.
const DefaultEventsCapacity = 256

// NewEvents returns a log keeping the last capacity events (0:
// DefaultEventsCapacity).
func NewEvents(capacity int) *Events {
	if capacity <= 0 {
		capacity = DefaultEventsCapacity
	}
	return &Events{ring: make([]Event, capacity)}
}

// Add records ev, stamping it with the current time when ev.Time is zero,
// and passes it to the subscribers.
func (e *Events) Add(ev Event) {
	if e == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	e.ring[e.next] = ev
	e.next++
	if e.next == len(e.ring) {
		e.next, e.full = 0, true
	}
	subs := e.subs
	e.mu.Unlock()
	for _, f := range subs {
		f(ev)
	}
}

// List returns the recorded events, oldest first.
func (e *Events) List() []Event {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	if e.full {
		out = append(out, e.ring[e.next:]...)
	}
	return append(out, e.ring[:e.next]...)
}

// Subscribe calls f with every event added from now on, on the goroutine
// that adds it; f must not block or call Add.
func (e *Events) Subscribe(f func(Event)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	// Copy on write: Add reads subs without the lock.
	e.subs = append(e.subs[:len(e.subs):len(e.subs)], f)
}
