package failover_test

import (
	"context"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

const plannedAB = `{"leader":"a","member":"b"}`

// A switchover announced ahead (Patroni's failover key) holds new
// transactions at once while the old primary is still writable, lets the
// one running finish there, and releases only once the source names the
// new primary: nothing of ours is in flight when the old one stops.
func TestFakePlannedSwitchoverHoldsAhead(t *testing.T) {
	env := startEngine(t, "10s", nil)
	a, b := memberA(), memberB()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	ctx := context.Background()
	inFlight, next := env.connect(t), env.connect(t)
	if err := inFlight.Exec(ctx, "BEGIN; SELECT 1").Close(); err != nil {
		t.Fatal(err)
	}

	env.src.publishPlanned(a, plannedAB)
	proxytest.Eventually(t, 2*time.Second, "held on the request", func() bool { return held(env.db) })
	// The transaction already running goes on and commits on A.
	if addr, err := serverAddr(ctx, inFlight); err != nil || addr != "127.0.0.1" {
		t.Fatalf("in-flight transaction during the planned hold: %q, %v", addr, err)
	}
	if err := inFlight.Exec(ctx, "COMMIT").Close(); err != nil {
		t.Fatalf("COMMIT during the planned hold: %v", err)
	}
	// A new one waits, although A would still verify as writable.
	done := make(chan string, 1)
	go func() {
		addr, err := serverAddr(ctx, next)
		if err != nil {
			addr = "error: " + err.Error()
		}
		done <- addr
	}()
	env.requireHeldFor(t, 400*time.Millisecond)
	select {
	case addr := <-done:
		t.Fatalf("a new transaction ran during the planned hold (on %s)", addr)
	default:
	}

	// Patroni moves the leader: the engine verifies B and releases there.
	env.src.publishPlanned(b, "")
	env.requireReleasedOn(t, b)
	if addr := <-done; addr != "unix" {
		t.Fatalf("the held transaction ran on %q, want the new primary (unix)", addr)
	}
	// The cycle's event says it began with a planned switchover (the
	// switchover hold reason and role change kind of the metrics); the
	// first one, at start, does not.
	var evs []failover.Event
	for len(env.events) > 0 {
		evs = append(evs, <-env.events)
	}
	if len(evs) != 2 || evs[0].Planned || !evs[1].Planned || evs[1].From != a.Addr() || evs[1].To != b.Addr() {
		t.Fatalf("events %+v: want the start (not planned), then %s -> %s planned", evs, a.Addr(), b.Addr())
	}
}

// A request that Patroni drops (refused, withdrawn) releases the hold on
// the primary that never stopped.
func TestFakePlannedSwitchoverWithdrawn(t *testing.T) {
	env := startEngine(t, "10s", nil)
	a := memberA()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	env.src.publishPlanned(a, plannedAB)
	proxytest.Eventually(t, 2*time.Second, "held on the request", func() bool { return held(env.db) })
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	c := env.connect(t)
	if addr, err := serverAddr(context.Background(), c); err != nil || addr != "127.0.0.1" {
		t.Fatalf("after the withdrawn request: %q, %v", addr, err)
	}
}

// A request that lingers past PlannedTimeout without a new primary named
// releases to the current one, and does not hold traffic again until
// another request comes.
func TestFakePlannedSwitchoverTimesOut(t *testing.T) {
	env := startEngine(t, "10s", nil, func(o *failover.Options) { o.PlannedTimeout = 300 * time.Millisecond })
	a := memberA()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	start := time.Now()
	env.src.publishPlanned(a, plannedAB)
	proxytest.Eventually(t, 2*time.Second, "held on the request", func() bool { return held(env.db) })
	env.requireReleasedOn(t, a)
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("released after %s, before PlannedTimeout", d)
	}
	for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if held(env.db) {
			t.Fatal("the same request held traffic again")
		}
	}
	env.src.publishPlanned(a, `{"leader":"a","member":"c"}`)
	proxytest.Eventually(t, 2*time.Second, "held on a new request", func() bool { return held(env.db) })
	env.requireReleasedOn(t, a)
}
