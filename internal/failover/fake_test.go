package failover_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// These tests drive one Engine with a scripted discovery source, against
// the package's real PostgreSQL cluster. The cluster answers on two
// addresses, TCP (memberA) and its Unix socket (memberB): two "nodes" that
// are both writable, which is what a role change between two primaries
// looks like to the engine. A port where nothing listens is a node that
// cannot be verified.

// fakeSource is a discovery.Source whose snapshots the test publishes.
type fakeSource struct {
	mu      sync.Mutex
	snap    *discovery.Snapshot
	changed chan struct{}
	hurries int
	ran     chan struct{} // closed when Run returns
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		snap:    &discovery.Snapshot{Source: "fake", Err: errors.New("fake: no answer yet")},
		changed: make(chan struct{}),
		ran:     make(chan struct{}),
	}
}

func (f *fakeSource) Run(ctx context.Context) {
	defer close(f.ran)
	<-ctx.Done()
}

func (f *fakeSource) Snapshot() *discovery.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeSource) Hurry() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hurries++
}

// Hurries is how often the engine asked for fast polling: once per cycle.
func (f *fakeSource) Hurries() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hurries
}

// publish makes primary (nil: none) and err the current snapshot, moving
// the generation when the primary's address changes, as real sources do.
func (f *fakeSource) publish(primary *discovery.Member, err error) {
	f.publishSnap(primary, "", err)
}

// publishPlanned is publish with Planned set, as the Consul source does
// while Patroni's failover key asks for a switchover.
func (f *fakeSource) publishPlanned(primary *discovery.Member, planned string) {
	f.publishSnap(primary, planned, nil)
}

func (f *fakeSource) publishSnap(primary *discovery.Member, planned string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gen := f.snap.Generation
	if addrOf(f.snap.Primary) != addrOf(primary) {
		gen++
	}
	f.snap = &discovery.Snapshot{Generation: gen, Source: "fake", Primary: primary, Planned: planned, Changing: planned != "", Updated: time.Now(), Err: err}
	close(f.changed)
	f.changed = make(chan struct{})
}

func addrOf(m *discovery.Member) string {
	if m == nil {
		return ""
	}
	return m.Addr()
}

// memberA is pg over TCP, memberB pg over its Unix socket.
func memberA() *discovery.Member {
	return &discovery.Member{Name: "a", Host: "127.0.0.1", Port: pg.Port, Role: "primary", LagBytes: -1}
}

func memberB() *discovery.Member {
	return &discovery.Member{Name: "b", Host: pg.SocketDir, Port: pg.Port, Role: "primary", LagBytes: -1}
}

// deadMember is a node where nothing listens.
func deadMember(t *testing.T) *discovery.Member {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return &discovery.Member{Name: "dead", Host: "127.0.0.1", Port: port, Role: "primary", LagBytes: -1}
}

// engineEnv is a router with database "db" handed to an Engine fed by src,
// and a proxy in front of it for traffic.
type engineEnv struct {
	src    *fakeSource
	router *router.Router
	db     *router.Database
	eng    *failover.Engine
	port   int
	events chan failover.Event
}

// startEngine serves database "db" (pg's "postgres" database, forced
// superuser login, trust for clients) with the given hold_timeout, hands it
// to an Engine fed by the source newSource returns (nil: a new fakeSource,
// then in env.src), and stops everything when the test ends.
func startEngine(t *testing.T, holdTimeout string, newSource func(*router.Database) discovery.Source, tune ...func(*failover.Options)) *engineEnv {
	t.Helper()
	p := proxytest.Start(t, fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 4
max_client_conn = 50
hold_timeout = %q

[databases.db]
%s`, holdTimeout, staticDB(pg)))
	r, log, port := p.Router, p.Log, p.Port
	db, ok := r.Database("db")
	if !ok {
		t.Fatal(`no database "db"`)
	}
	db.Manage()
	env := &engineEnv{router: r, db: db, port: port, events: make(chan failover.Event, 100)}
	var src discovery.Source
	if newSource != nil {
		src = newSource(db)
	} else {
		env.src = newFakeSource()
		src = env.src
	}
	opts := failover.Options{
		FastInterval:  20 * time.Millisecond,
		VerifyTimeout: time.Second,
		Log:           log,
		OnEvent: func(ev failover.Event) {
			select {
			case env.events <- ev:
			default:
			}
		},
	}
	for _, f := range tune {
		f(&opts)
	}
	env.eng = failover.New(db, src, opts)
	ctx, cancel := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	go func() {
		env.eng.Run(ctx)
		close(engDone)
	}()
	// Runs before the proxy's own cleanup (registered by Start).
	t.Cleanup(func() {
		cancel()
		<-engDone
		if env.src != nil {
			<-env.src.ran
		}
	})
	return env
}

// dial opens a client connection through the proxy.
func (e *engineEnv) dial(ctx context.Context) (*pgconn.PgConn, error) {
	return pgconn.Connect(ctx, fmt.Sprintf("postgres://app@127.0.0.1:%d/db?sslmode=disable", e.port))
}

// connect is dial for a database that is not held, closed when the test
// ends.
func (e *engineEnv) connect(t *testing.T) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.dial(ctx)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// serverAddr runs one transaction through c and returns the address of the
// server that ran it: "127.0.0.1" over TCP (memberA), "unix" over the
// socket (memberB).
func serverAddr(ctx context.Context, c *pgconn.PgConn) (string, error) {
	res := c.ExecParams(ctx, "SELECT coalesce(host(inet_server_addr()), 'unix')", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 {
		return "", fmt.Errorf("%d rows", len(res.Rows))
	}
	return string(res.Rows[0][0]), nil
}

func held(db *router.Database) bool {
	h, _ := db.Held()
	return h
}

// requireReleasedOn waits until the engine has verified m and released the
// database, then checks that the pools point at m.
func (e *engineEnv) requireReleasedOn(t *testing.T, m *discovery.Member) {
	t.Helper()
	proxytest.Eventually(t, 4*time.Second, "released on "+m.Addr(), func() bool {
		st := e.eng.Status()
		return st.Verified == m.Addr() && !st.Cycling && !held(e.db)
	})
	if tg := e.db.Target(); tg.Host != m.Host || tg.Port != m.Port {
		t.Fatalf("pools target %s:%d, want %s", tg.Host, tg.Port, m.Addr())
	}
	if err := e.eng.Status().LastErr; err != nil {
		t.Fatalf("LastErr %v after a release", err)
	}
}

// requireHeldFor checks that the database stays held, with no verified
// primary, for d.
func (e *engineEnv) requireHeldFor(t *testing.T, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		st := e.eng.Status()
		if !held(e.db) || st.Verified != "" || !st.Cycling {
			t.Fatalf("want held with no verified primary; held %v, status %+v", held(e.db), st)
		}
	}
}

func TestFakeStartupHeldUntilPrimaryNamed(t *testing.T) {
	env := startEngine(t, "4s", nil)
	// No answer from the source yet: the startup cycle holds.
	proxytest.Eventually(t, 2*time.Second, "startup cycle", func() bool { return env.eng.Status().Cycling })
	env.requireHeldFor(t, 200*time.Millisecond)
	gen := env.db.Target().Gen

	// A client that arrives while held waits, then logs in and runs. (The
	// first login of a database needs a server connection, for the
	// server's parameters, so it is the login that waits here.)
	type result struct {
		addr string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := env.dial(context.Background())
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close(context.Background())
		addr, err := serverAddr(context.Background(), c)
		done <- result{addr, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("a client got through while held: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	env.src.publish(memberA(), nil)
	env.requireReleasedOn(t, memberA())
	if r := <-done; r.err != nil || r.addr != "127.0.0.1" {
		t.Fatalf("held client: %+v, want its transaction run on 127.0.0.1", r)
	}
	if g := env.db.Target().Gen; g <= gen {
		t.Fatalf("generation %d after the release, want more than %d", g, gen)
	}
	select {
	case ev := <-env.events:
		if ev.Outcome != "released" || ev.To != memberA().Addr() || ev.From != "" || ev.Reason != "startup" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(time.Second):
		t.Fatal("no event for the release")
	}
}

func TestFakeLeaderFlaps(t *testing.T) {
	env := startEngine(t, "4s", nil)
	a, b := memberA(), memberB()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	gen := env.db.Target().Gen

	// Traffic runs all along: every transaction must succeed (held ones
	// wait), none may fail.
	ctx, cancel := context.WithCancel(context.Background())
	c := env.connect(t)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		n    int
	)
	// Stopped before the connection's own cleanup, a failing check
	// included.
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		for ctx.Err() == nil {
			_, err := serverAddr(context.Background(), c)
			mu.Lock()
			n++
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}
	})

	// A -> B, and back to A as soon as the engine started on B.
	hurries := env.src.Hurries()
	env.src.publish(b, nil)
	proxytest.Eventually(t, 2*time.Second, "a cycle for B", func() bool { return env.src.Hurries() > hurries })
	env.src.publish(a, nil)
	// Then faster than the engine can follow: B, A, B, A.
	for _, m := range []*discovery.Member{b, a, b, a} {
		env.src.publish(m, nil)
	}
	// The engine settles on A, in a new generation, and its last event
	// is the release on A. (Right after the publications it may not have
	// started on them yet: wait for all of it.)
	var last failover.Event
	proxytest.Eventually(t, 20*time.Second, "settled on A after the flaps, the last event a release on A", func() bool {
		for drained := false; !drained; {
			select {
			case ev := <-env.events:
				last = ev
			default:
				drained = true
			}
		}
		st := env.eng.Status()
		return last.Outcome == "released" && last.To == a.Addr() && st.Verified == a.Addr() && !st.Cycling &&
			!held(env.db) && env.db.Target().Gen > gen
	})
	env.requireReleasedOn(t, a)

	// Traffic goes on, to A, after the last cycle.
	time.Sleep(100 * time.Millisecond)
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 || n == 0 {
		t.Fatalf("%d transactions during the flaps, errors: %v", n, errs)
	}
	t.Logf("%d transactions during the flaps, generation %d -> %d", n, gen, env.db.Target().Gen)
	addr, err := serverAddr(context.Background(), c)
	if err != nil || addr != "127.0.0.1" {
		t.Fatalf("after the flaps: server %q, %v; want 127.0.0.1 (A)", addr, err)
	}
}

func TestFakeNoPrimaryHolds(t *testing.T) {
	env := startEngine(t, "4s", nil)
	a := memberA()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	c := env.connect(t)
	ctx := context.Background()
	if _, err := serverAddr(ctx, c); err != nil {
		t.Fatal(err)
	}

	// The source answers, and names no leader: hold.
	env.src.publish(nil, nil)
	proxytest.Eventually(t, 2*time.Second, "held with no primary", func() bool { return held(env.db) && env.eng.Status().Cycling })
	env.requireHeldFor(t, 300*time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := serverAddr(ctx, c)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a transaction ran with no primary (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}

	// The leader comes back: the held transaction runs.
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	if err := <-done; err != nil {
		t.Fatalf("held transaction: %v", err)
	}
}

func TestFakeSourceUnreachableKeepsServing(t *testing.T) {
	env := startEngine(t, "4s", nil)
	a := memberA()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	gen := env.db.Target().Gen
	c := env.connect(t)
	ctx := context.Background()

	unreachable := errors.New("fake: connection refused")
	tests := []struct {
		name    string
		primary *discovery.Member
	}{
		// A source that lost contact keeps its last primary (Patroni,
		// Consul) ...
		{name: "primary kept", primary: a},
		// ... or knows none (static hosts that all fail).
		{name: "no primary", primary: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.src.publish(tt.primary, unreachable)
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				st := env.eng.Status()
				if held(env.db) || st.Cycling || st.Verified != a.Addr() {
					t.Fatalf("source unreachable: held %v, status %+v; want A served", held(env.db), st)
				}
				if _, err := serverAddr(ctx, c); err != nil {
					t.Fatalf("transaction while the source is unreachable: %v", err)
				}
			}
			if st := env.eng.Status(); !errors.Is(st.Snapshot.Err, unreachable) {
				t.Fatalf("status snapshot error %v, want the source's", st.Snapshot.Err)
			}
			if g := env.db.Target().Gen; g != gen {
				t.Fatalf("generation moved from %d to %d while nothing changed", gen, g)
			}
		})
	}

	// The source comes back naming the same primary: nothing to do.
	env.src.publish(a, nil)
	time.Sleep(100 * time.Millisecond)
	if held(env.db) || env.db.Target().Gen != gen {
		t.Fatalf("source back with the same primary: held %v, generation %d (was %d)", held(env.db), env.db.Target().Gen, gen)
	}
}

func TestFakeCandidateNotVerifiedStaysHeld(t *testing.T) {
	env := startEngine(t, "4s", nil)
	dead := deadMember(t)
	env.src.publish(dead, nil)
	proxytest.Eventually(t, 2*time.Second, "a failed verification", func() bool { return env.eng.Status().LastErr != nil })
	env.requireHeldFor(t, 300*time.Millisecond)
	st := env.eng.Status()
	if st.LastErr == nil || !containsAddr(st.LastErr, dead) {
		t.Fatalf("LastErr %v, want the verification of %s", st.LastErr, dead.Addr())
	}
	if tg := env.db.Target(); tg.Port == dead.Port {
		t.Fatalf("pools moved to %s although it was never verified", dead.Addr())
	}

	// The source names a node that is writable: released there.
	env.src.publish(memberA(), nil)
	env.requireReleasedOn(t, memberA())
	c := env.connect(t)
	if addr, err := serverAddr(context.Background(), c); err != nil || addr != "127.0.0.1" {
		t.Fatalf("after the release: %q, %v", addr, err)
	}
}

func containsAddr(err error, m *discovery.Member) bool {
	return err != nil && strings.Contains(err.Error(), m.Addr())
}

// Two writable hosts in a static host list are a split brain: the static
// source names no primary (Err wraps ErrSplitBrain), and the engine, which
// has never verified one, holds; a client waits out hold_timeout and gets
// 57P03 rather than reaching either side.
func TestStaticSplitBrainStaysHeld(t *testing.T) {
	env := startEngine(t, "700ms", func(db *router.Database) discovery.Source {
		probe := func(ctx context.Context, addr string) (bool, error) {
			host, portStr, err := net.SplitHostPort(addr)
			if err != nil {
				return false, err
			}
			port, err := strconv.Atoi(portStr)
			if err != nil {
				return false, err
			}
			return db.Probe(ctx, host, port)
		}
		return discovery.NewStatic([]string{memberA().Addr(), memberB().Addr()}, probe, discovery.Options{
			Interval: 100 * time.Millisecond, FastInterval: 20 * time.Millisecond, HTTPTimeout: time.Second,
		})
	})

	proxytest.Eventually(t, 3*time.Second, "split brain reported", func() bool {
		return errors.Is(env.eng.Status().Snapshot.Err, discovery.ErrSplitBrain)
	})
	if st := env.eng.Status(); st.Snapshot.Primary != nil || len(st.Snapshot.Replicas) != 2 {
		t.Fatalf("split brain snapshot: primary %v, %d others", st.Snapshot.Primary, len(st.Snapshot.Replicas))
	}
	env.requireHeldFor(t, 300*time.Millisecond)
	// The first login needs a server, so it is the login that waits.
	start := time.Now()
	c, err := env.dial(context.Background())
	if err == nil {
		c.Close(context.Background())
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("login during a split brain: %v, want 57P03 after hold_timeout", err)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("refused after %s, want after hold_timeout (700ms)", d)
	}
	env.requireHeldFor(t, 100*time.Millisecond)
}
