package pool

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func TestRefusedLoginWaitsForReleasedConnection(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 4, LoginRetry: time.Hour, QueryWait: time.Minute})
	ctx := context.Background()
	first, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The server is full from now on: every further login is refused
	// with a reason that heals by waiting.
	full := error(&LoginError{Err: errors.New("too many connections (SQLSTATE 53300)"), Wait: true})
	f.fail.Store(&full)

	const clients = 6
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			c, err := p.Acquire(ctx)
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
			p.Put(c)
		})
	}
	eventually(t, func() bool { return p.Stats().Waiting > 0 })
	p.Put(first)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("want every client served by the live connection, got %v", err)
	}
	if n := f.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2 (one refused, then the server_login_retry back-off)", n)
	}
}

func TestRefusedLoginRetriedAfterLoginRetry(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 2, LoginRetry: 300 * time.Millisecond, QueryWait: time.Minute})
	starting := error(&LoginError{Err: errors.New("the database system is starting up (SQLSTATE 57P03)"), Wait: true})
	f.fail.Store(&starting)
	time.AfterFunc(500*time.Millisecond, func() { f.fail.Store(nil) })
	c, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatalf("want the acquisition to wait for the server to come up, got %v", err)
	}
	p.Put(c)
}

func TestRefusedLoginBoundedByQueryWait(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 2, LoginRetry: 100 * time.Millisecond, QueryWait: 500 * time.Millisecond})
	full := error(&LoginError{Err: errors.New("too many connections (SQLSTATE 53300)"), Wait: true})
	f.fail.Store(&full)
	_, err := p.Acquire(context.Background())
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Fatalf("want 53300 after query_wait_timeout, got %v", err)
	}
}

func TestLoginFailureThatCannotHealFailsWaiters(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 1, LoginRetry: time.Hour, QueryWait: time.Minute})
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.retire.Store(true) // the next acquisition must dial
	bad := error(&LoginError{Err: errors.New("password authentication failed (SQLSTATE 28P01)")})
	f.fail.Store(&bad)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			c, err := p.Acquire(ctx)
			if err == nil {
				p.Put(c)
			}
			errs <- err
		}()
	}
	eventually(t, func() bool { return p.Stats().Waiting == 3 })
	p.Put(c)
	for range 3 {
		var pe *Error
		if err := <-errs; !errors.As(err, &pe) || pe.Code != "08001" {
			t.Fatalf("want 08001 carrying the server's reason, got %v", err)
		}
	}
}

func TestRefuseFailsHeldWaiters(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1, HoldTimeout: time.Minute})
	p.Hold()
	errs := make(chan error, 1)
	go func() {
		_, err := p.Acquire(context.Background())
		errs <- err
	}()
	eventually(t, func() bool { return p.Stats().Waiting == 1 })
	p.Refuse(&LoginError{Err: errors.New("database \"x\" does not exist (SQLSTATE 3D000)")})
	var pe *Error
	if err := <-errs; !errors.As(err, &pe) || pe.Code != "08001" {
		t.Fatalf("held waiter: want 08001, got %v", err)
	}
	// A new acquisition while held and refused fails at once.
	if _, err := p.Acquire(context.Background()); !errors.As(err, &pe) || pe.Code != "08001" {
		t.Fatalf("new acquisition: want 08001, got %v", err)
	}
	p.SetTarget(Target{Host: "h", Port: 1, Gen: 2})
	p.Unhold()
	c, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatalf("after a new target: %v", err)
	}
	p.Put(c)
}

// A login refused for a reason that cannot heal does not fail clients while
// the pool has an open connection to hand them.
func TestLoginFailureWithLiveConnectionWaits(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 2, LoginRetry: time.Hour, QueryWait: time.Minute})
	ctx := context.Background()
	live, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := error(&LoginError{Err: errors.New("password authentication failed (SQLSTATE 28P01)")})
	f.fail.Store(&bad)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			c, err := p.Acquire(ctx)
			if err == nil {
				p.Put(c)
			}
			errs <- err
		}()
	}
	eventually(t, func() bool { return f.dials.Load() >= 2 && p.Stats().Waiting > 0 })
	p.Put(live)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("want every client served by the open connection, got %v", err)
		}
	}
}

// lines is a slog.Handler counting records by message.
type lines struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Message]++
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }
func (l *lines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// A server refusing every login gives one line per reason, not one per
// client or attempt; the end of a refusal that could not heal one more.
func TestLoginFailuresLoggedOncePerReason(t *testing.T) {
	h := &lines{n: map[string]int{}}
	f := &fakeDialer{}
	p := New("db/user", Config{Size: 1}, Target{Host: "h", Port: 1, Gen: 1}, f.dial, slog.New(h), nil)
	defer func() {
		p.Close()
		f.closeAll()
	}()
	const failed = "server login failed; waiting clients get the reason"
	bad := error(&LoginError{Err: errors.New("password authentication failed (SQLSTATE 28P01)")})
	f.fail.Store(&bad)
	for range 20 {
		if _, err := p.Acquire(context.Background()); err == nil {
			t.Fatal("acquired through a refused login")
		}
	}
	other := error(&LoginError{Err: errors.New("database \"x\" does not exist (SQLSTATE 3D000)")})
	f.fail.Store(&other)
	for range 20 {
		p.Acquire(context.Background())
	}
	if n := h.count(failed); n != 2 {
		t.Fatalf("%d lines for 40 refusals of 2 reasons, want 2", n)
	}
	f.fail.Store(nil)
	c, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	if n := h.count("server login works again"); n != 1 {
		t.Fatalf("%d 'works again' lines, want 1", n)
	}
}
