package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Proxy is one pauseproxy instance a pipeline pauses: a Console over the
// network, or the running process itself (cmd/pauseproxy, for the admin
// console's SWITCHOVER). Methods may be called from several goroutines,
// one call at a time per Proxy.
type Proxy interface {
	// Name identifies the proxy in messages ("127.0.0.1:6432").
	Name() string
	// Pause holds db's new transactions and waits for those in flight,
	// at most timeout (the proxy fails the PAUSE then, and resumes,
	// unless its pause_timeout_action says cancel). The pause ends by
	// itself expire after it was issued.
	Pause(ctx context.Context, db string, timeout, expire time.Duration) error
	// Resume ends db's pause. Resuming what is not paused is no error.
	Resume(ctx context.Context, db string) error
	// Reconnect retires db's server connections (RECONNECT): idle ones
	// close now, the others when released; new ones are dialed and
	// verified.
	Reconnect(ctx context.Context, db string) error
	// State returns what the proxy knows of db.
	State(ctx context.Context, db string) (State, error)
	// Close releases the proxy's connection. Safe to call twice.
	Close() error
}

// State is what one proxy knows of one database.
type State struct {
	// Paused is true while a PAUSE holds the database.
	Paused bool
	// Primary is the address ("host:port") discovery names primary, ""
	// when none.
	Primary string
	// Verified is the address the proxy verified writable in its current
	// generation, "" while none (a role change under way).
	Verified string
}

// fleet is the proxies a pipeline works on.
type fleet []Proxy

// each runs fn on every proxy at once and returns the errors joined, each
// naming its proxy.
func (f fleet) each(fn func(i int, p Proxy) error) error {
	errs := make([]error, len(f))
	var wg sync.WaitGroup
	for i, p := range f {
		wg.Go(func() {
			if err := fn(i, p); err != nil {
				errs[i] = fmt.Errorf("%s: %w", p.Name(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pause pauses db on every proxy at once. Any failure fails the whole:
// the caller's undo resumes every proxy (all or nothing).
func (f fleet) pause(ctx context.Context, db string, timeout, expire time.Duration) error {
	return f.each(func(_ int, p Proxy) error { return p.Pause(ctx, db, timeout, expire) })
}

func (f fleet) resume(ctx context.Context, db string) error {
	return f.each(func(_ int, p Proxy) error { return p.Resume(ctx, db) })
}

func (f fleet) reconnect(ctx context.Context, db string) error {
	return f.each(func(_ int, p Proxy) error { return p.Reconnect(ctx, db) })
}

func (f fleet) close() {
	for _, p := range f {
		p.Close()
	}
}

func (f fleet) names() []string {
	out := make([]string, len(f))
	for i, p := range f {
		out[i] = p.Name()
	}
	return out
}

// states returns every proxy's state of db, in fleet order.
func (f fleet) states(ctx context.Context, db string) ([]State, error) {
	out := make([]State, len(f))
	err := f.each(func(i int, p Proxy) error {
		var err error
		out[i], err = p.State(ctx, db)
		return err
	})
	return out, err
}

// waitPollInterval is how often a pipeline asks the proxies whether they
// verified a new primary: small next to the stall it measures.
const waitPollInterval = 50 * time.Millisecond

// waitAll polls every proxy until ok accepts its state of db, ctx ends, or
// abort (checked at each poll; may be nil) returns an error. It returns the
// verified address of each proxy. A proxy that does not answer is asked
// again: only the deadline gives up.
func (f fleet) waitAll(ctx context.Context, db string, ok func(State) bool, abort func() error) ([]string, error) {
	done := make([]string, len(f))
	var last []string
	t := time.NewTicker(waitPollInterval)
	defer t.Stop()
	for {
		last = last[:0]
		for i, p := range f {
			if done[i] != "" {
				continue
			}
			st, err := p.State(ctx, db)
			switch {
			case err != nil:
				last = append(last, fmt.Sprintf("%s: %v", p.Name(), err))
			case ok(st):
				done[i] = st.Verified
			default:
				last = append(last, fmt.Sprintf("%s: verified %s, discovery names %s", p.Name(), orNone(st.Verified), orNone(st.Primary)))
			}
		}
		if len(last) == 0 {
			return done, nil
		}
		if abort != nil {
			if err := abort(); err != nil {
				return done, err
			}
		}
		select {
		case <-ctx.Done():
			return done, fmt.Errorf("%w; still waiting for %s", ctx.Err(), strings.Join(last, "; "))
		case <-t.C:
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
