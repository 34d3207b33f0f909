package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
)

// TestMain stops the shared clusters, then fails the package if any
// goroutine outlived its test.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, sc := range []*sharedCluster{&etcdShared, &consulShared} {
		sc.stop()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedCluster is one real Patroni cluster per store, started by the first
// test that needs it and stopped by TestMain.
type sharedCluster struct {
	opts patronitest.Options
	once sync.Once
	c    *patronitest.Cluster
	err  error
}

var (
	// The etcd cluster's REST API is https with a private CA, requires
	// client certificates and has restapi.authentication: the Patroni
	// source's TLS settings are tested against the real thing.
	etcdShared = sharedCluster{opts: patronitest.Options{
		Store: patronitest.StoreEtcd, TLS: true, APIUsername: "pauseproxy", APIPassword: "api-secret",
	}}
	consulShared = sharedCluster{opts: patronitest.Options{Store: patronitest.StoreConsul}}
)

func (sc *sharedCluster) get(t *testing.T) *patronitest.Cluster {
	t.Helper()
	sc.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		sc.c, sc.err = patronitest.Start(ctx, sc.opts)
		if sc.err == nil {
			t.Logf("%s cluster %s started in %v", sc.opts.Store, sc.c.Scope, time.Since(start).Round(time.Millisecond))
		}
	})
	if sc.err != nil {
		t.Fatalf("start Patroni cluster on %s: %v", sc.opts.Store, sc.err)
	}
	return sc.c
}

func (sc *sharedCluster) stop() {
	if sc.c != nil {
		if err := sc.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop cluster:", err)
		}
	}
}

// testLogger logs through t, so that a source's lines show with -v and
// with a failing test.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// runSource runs src until the test ends.
func runSource(t *testing.T, src Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5s after its context was cancelled")
		}
	})
}

// waitFor waits until cond holds for the latest snapshot, waking on
// Changed, and returns that snapshot.
func waitFor(t *testing.T, src Source, timeout time.Duration, what string, cond func(*Snapshot) bool) *Snapshot {
	t.Helper()
	deadline := time.After(timeout)
	for {
		ch := src.Changed()
		s := src.Snapshot()
		if cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond):
			// Changed closes on material changes only; poll too so
			// a condition on Updated or Endpoint is seen.
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; last snapshot: %s", timeout, what, fmtSnap(src.Snapshot()))
		}
	}
}

func fmtSnap(s *Snapshot) string {
	p := "none"
	if s.Primary != nil {
		p = fmt.Sprintf("%s@%s(%s/%s)", s.Primary.Name, s.Primary.Addr(), s.Primary.Role, s.Primary.State)
	}
	var rs []string
	for _, r := range s.Replicas {
		rs = append(rs, fmt.Sprintf("%s@%s(%s/%s)", r.Name, r.Addr(), r.Role, r.State))
	}
	return fmt.Sprintf("gen=%d primary=%s replicas=%v changing=%v err=%v endpoint=%s", s.Generation, p, rs, s.Changing, s.Err, s.Endpoint)
}
