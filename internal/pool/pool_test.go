package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDialer hands out in-memory connections; the far ends are kept so a
// test can close them (a server going away).
type fakeDialer struct {
	mu    sync.Mutex
	peers []net.Conn
	dials atomic.Int32
	fail  atomic.Pointer[error]
}

func (f *fakeDialer) dial(ctx context.Context, t Target) (*Server, error) {
	f.dials.Add(1)
	if e := f.fail.Load(); e != nil {
		return nil, *e
	}
	a, b := net.Pipe()
	f.mu.Lock()
	f.peers = append(f.peers, b)
	f.mu.Unlock()
	go io.Copy(io.Discard, b) // the server reads what it is sent (Terminate)
	return &Server{Conn: a, PID: uint32(f.dials.Load()), Params: map[string]string{"server_version": "15"}}, nil
}

func (f *fakeDialer) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.peers {
		p.Close()
	}
	f.peers = nil
}

func newTestPool(t *testing.T, cfg Config) (*Pool, *fakeDialer) {
	t.Helper()
	f := &fakeDialer{}
	p := New("db/user", cfg, Target{Host: "h", Port: 1, Gen: 1}, f.dial, slog.New(slog.DiscardHandler), nil)
	t.Cleanup(func() {
		p.Close()
		f.closeAll()
	})
	return p, f
}

func TestAcquireReusesAndBoundsSize(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 2, QueryWait: 200 * time.Millisecond, HoldTimeout: time.Second})
	ctx := context.Background()
	a, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Full: the third waits query_wait_timeout and gets 53300.
	start := time.Now()
	_, err = p.Acquire(ctx)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "53300" {
		t.Fatalf("want 53300, got %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("gave up after %s", d)
	}
	p.Put(a)
	c, err := p.Acquire(ctx)
	if err != nil || c != a {
		t.Fatalf("want the released connection back, got %v %v", c, err)
	}
	p.Put(b)
	p.Put(c)
	if n := f.dials.Load(); n != 2 {
		t.Fatalf("%d dials for a pool of 2", n)
	}
	if s := p.Stats(); s.Idle != 2 || s.Active != 0 || s.Total != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHoldReleasesInArrivalOrder(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1, HoldTimeout: 5 * time.Second})
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	p.Hold()
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			time.Sleep(10 * time.Millisecond)
			p.Put(c)
		}(i)
		// Let each arrive before the next.
		eventually(t, func() bool { return p.Stats().Waiting == i+1 })
	}
	time.Sleep(50 * time.Millisecond)
	if len(order) != 0 {
		t.Fatal("an acquisition went through a hold")
	}
	p.Unhold()
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Fatalf("released %d before %d", got, want)
		}
		want++
	}
}

func TestHoldTimeoutIs57P03(t *testing.T) {
	p, _ := newTestPool(t, Config{Size: 1, HoldTimeout: 100 * time.Millisecond})
	p.Hold()
	_, err := p.Acquire(context.Background())
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("want 57P03, got %v", err)
	}
}

func TestRetargetRetiresOldGeneration(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 2, HoldTimeout: time.Second})
	ctx := context.Background()
	a, _ := p.Acquire(ctx)
	b, _ := p.Acquire(ctx)
	p.Put(a) // idle in generation 1
	p.SetTarget(Target{Host: "h2", Port: 2, Gen: 2})
	eventually(t, func() bool { return p.Stats().Idle == 0 })
	p.Put(b) // bound during the retarget: closed when released
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c == a || c == b || c.Target().Gen != 2 {
		t.Fatalf("got a connection of generation %d", c.Target().Gen)
	}
	p.Put(c)
	if n := f.dials.Load(); n != 3 {
		t.Fatalf("%d dials, want 3", n)
	}
}

func TestDialErrorHeldAndRetried(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 1, HoldTimeout: 2 * time.Second})
	down := errors.New("connection refused")
	f.fail.Store(&down)
	var calls atomic.Int32
	p.OnDialError = func(err error) bool {
		calls.Add(1)
		p.Hold()
		// The cause goes away; a role-change engine would release.
		time.AfterFunc(100*time.Millisecond, func() {
			f.fail.Store(nil)
			p.SetTarget(Target{Host: "h", Port: 1, Gen: 2})
			p.Unhold()
		})
		return true
	}
	c, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatalf("want the acquisition to wait out the failure, got %v", err)
	}
	p.Put(c)
	if calls.Load() != 1 {
		t.Fatalf("OnDialError called %d times", calls.Load())
	}
}

func TestServerDyingWhileIdleIsReplaced(t *testing.T) {
	p, f := newTestPool(t, Config{Size: 1, HoldTimeout: time.Second})
	ctx := context.Background()
	c, _ := p.Acquire(ctx)
	p.Put(c)
	f.closeAll()
	eventually(t, func() bool { return p.Stats().Total == 0 })
	d, err := p.Acquire(ctx)
	if err != nil || d == c {
		t.Fatalf("want a fresh connection, got %v", err)
	}
	p.Put(d)
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLimitSharedByPools(t *testing.T) {
	lim := NewLimit(2)
	a, _ := newTestPool(t, Config{Size: 5, QueryWait: 5 * time.Second, HoldTimeout: time.Second, Limits: []*Limit{lim}})
	b, _ := newTestPool(t, Config{Size: 5, QueryWait: 5 * time.Second, HoldTimeout: time.Second, Limits: []*Limit{lim}})
	ctx := context.Background()
	c1, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b waits: the limit is reached although b itself has room.
	got := make(chan *Conn, 1)
	go func() {
		c, err := b.Acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	select {
	case <-got:
		t.Fatal("acquired over max 2")
	case <-time.After(300 * time.Millisecond):
	}
	// Once a's connections are idle, one of them is closed to make room
	// for b (within a janitor tick).
	a.Put(c1)
	a.Put(c2)
	select {
	case c := <-got:
		if c == nil {
			t.Fatal("no connection")
		}
		b.Put(c)
	case <-time.After(3 * time.Second):
		t.Fatal("b still waiting while a had idle connections")
	}
	if n := a.Stats().Total + b.Stats().Total; n > 2 {
		t.Fatalf("%d connections under a limit of 2", n)
	}
}

func TestWaitsExpireInTurn(t *testing.T) {
	// One pool-wide timer ends waits at their own deadlines: the first
	// waiter's query_wait_timeout passes while a later one (queued during
	// a hold, so bounded by the long hold_timeout) waits on, the
	// connection released after the hold goes to that one, and a third
	// still times out at its own deadline.
	p, _ := newTestPool(t, Config{Size: 1, QueryWait: 300 * time.Millisecond, HoldTimeout: 10 * time.Minute})
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		i     int
		c     *Conn
		err   error
		after time.Duration
	}
	results := make(chan result, 3)
	start := time.Now()
	wait := func(i int) {
		got, err := p.Acquire(ctx)
		results <- result{i, got, err, time.Since(start)}
	}
	go wait(0)
	waitForWaiters(t, p, 1)
	p.Hold()
	go wait(1)
	waitForWaiters(t, p, 2)
	first := <-results
	var pe *Error
	if first.i != 0 || !errors.As(first.err, &pe) || pe.Code != "53300" || first.after < 250*time.Millisecond {
		t.Fatalf("first result %+v, want waiter 0 timed out (53300) after about 300ms", first)
	}
	// Waiter 1 is still queued (its deadline is minutes away): it gets
	// the connection released after the hold.
	p.Unhold()
	p.Put(c)
	second := <-results
	if second.i != 1 || second.err != nil || second.c != c {
		t.Fatalf("second result %+v, want waiter 1 granted the connection", second)
	}
	go wait(2)
	third := <-results
	if third.i != 2 || !errors.As(third.err, &pe) || pe.Code != "53300" {
		t.Fatalf("third result %+v, want 53300", third)
	}
	p.Put(second.c)
}

// waitForWaiters waits until n acquisitions are queued.
func waitForWaiters(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		got := p.waiters.len()
		p.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}
