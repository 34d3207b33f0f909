// Package logagg folds repeated log lines into one line per kind per
// interval with a count, so that a flood of the same event (10,000 silent
// clients timing out at login, a server refusing every login) gives a few
// lines, not one per occurrence.
//
// The first occurrence of a kind is logged at once, as it comes. Further
// occurrences within the interval are only counted; when the interval
// ends, one line says how many there were ("repeated" attribute) with the
// attributes of the last one, and a new interval starts. A kind that
// stays quiet for a whole interval is forgotten, so its next occurrence is
// logged at once again.
//
// It owns nothing but its counters and timers; it imports no pauseproxy
// package. Kinds should be of low cardinality (an event and a database or
// pool name, not a client address): each is kept for one interval.
package logagg

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the interval of New(log, 0).
const DefaultInterval = 10 * time.Second

// Aggregator counts log lines per kind. The zero value is not usable; call
// New. Methods are safe for concurrent use; Close is safe to call twice.
type Aggregator struct {
	log      *slog.Logger
	interval time.Duration

	mu     sync.Mutex // guards the fields below
	kinds  map[string]*entry
	closed bool
}

// entry is one kind's interval.
type entry struct {
	level slog.Level
	msg   string
	attrs []slog.Attr // of the last occurrence
	count int         // occurrences not logged yet
	timer *time.Timer
}

// New returns an aggregator logging to log, one line per kind per interval
// (DefaultInterval when interval <= 0); a nil log discards.
func New(log *slog.Logger, interval time.Duration) *Aggregator {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Aggregator{log: log, interval: interval, kinds: make(map[string]*entry)}
}

// Log records one occurrence of kind: logged now if it is the first of
// its interval, counted otherwise.
func (a *Aggregator) Log(level slog.Level, kind, msg string, attrs ...slog.Attr) {
	if !a.log.Enabled(context.Background(), level) {
		return
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.log.LogAttrs(context.Background(), level, msg, attrs...)
		return
	}
	if e, ok := a.kinds[kind]; ok {
		e.count++
		e.level, e.msg, e.attrs = level, msg, attrs
		a.mu.Unlock()
		return
	}
	e := &entry{level: level, msg: msg}
	e.timer = time.AfterFunc(a.interval, func() { a.flush(kind, e) })
	a.kinds[kind] = e
	a.mu.Unlock()
	a.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// flush ends kind's interval: one line for the occurrences counted in it,
// and a new interval, or nothing and the kind is forgotten.
func (a *Aggregator) flush(kind string, e *entry) {
	a.mu.Lock()
	if a.kinds[kind] != e {
		a.mu.Unlock()
		return
	}
	n, level, msg, attrs := e.count, e.level, e.msg, e.attrs
	e.count, e.attrs = 0, nil
	if n == 0 || a.closed {
		delete(a.kinds, kind)
	} else {
		e.timer.Reset(a.interval)
	}
	a.mu.Unlock()
	if n > 0 {
		a.emit(level, msg, attrs, n)
	}
}

func (a *Aggregator) emit(level slog.Level, msg string, attrs []slog.Attr, n int) {
	all := make([]slog.Attr, 0, len(attrs)+2)
	all = append(all, attrs...)
	all = append(all, slog.Int("repeated", n), slog.Duration("interval", a.interval))
	a.log.LogAttrs(context.Background(), level, msg, all...)
}

// Close logs the counts not logged yet and stops the timers; later
// occurrences are logged one by one.
func (a *Aggregator) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	kinds := a.kinds
	a.kinds = nil
	a.mu.Unlock()
	for _, e := range kinds {
		e.timer.Stop()
		if e.count > 0 {
			a.emit(e.level, e.msg, e.attrs, e.count)
		}
	}
}
