package ops_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/ops"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// fakeProxy is a proxy that records what the pipeline asks of it.
type fakeProxy struct {
	mu      sync.Mutex
	pauses  []time.Duration // the drain of each PAUSE
	resumes int
}

func (f *fakeProxy) Name() string { return "fake" }
func (f *fakeProxy) Pause(_ context.Context, _ string, timeout, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pauses = append(f.pauses, timeout)
	return nil
}
func (f *fakeProxy) Resume(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumes++
	return nil
}
func (f *fakeProxy) Reconnect(context.Context, string) error { return nil }
func (f *fakeProxy) State(context.Context, string) (ops.State, error) {
	return ops.State{Primary: "127.0.0.1:5432", Verified: "127.0.0.1:5432"}, nil
}
func (f *fakeProxy) Close() error { return nil }

// staticConfig is a configuration with one static database and the given
// hold_timeout (exec takes a file lock for it, no Consul).
func staticConfig(t *testing.T, hold time.Duration) *config.Config {
	t.Helper()
	cfg := proxyA.loadConfig(t)
	cfg.Proxy.HoldTimeout = hold
	dc := *cfg.Databases["db"]
	dc.Discovery = config.DiscoveryStatic
	dc.Host, dc.Port = "127.0.0.1", 5432
	cfg.Databases = map[string]*config.Database{"db": &dc}
	return cfg
}

// exec never holds traffic longer than hold_timeout allows: it refuses to
// start when hold_timeout leaves no room for the drain and the command,
// and otherwise shortens the drain and resumes before a held client can
// time out, saying why.
func TestExecHeldWithinHoldTimeout(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		fp := &fakeProxy{}
		_, err := ops.Exec(context.Background(), ops.ExecOptions{
			Options: ops.Options{Config: staticConfig(t, 10*time.Second), Database: "db", Proxies: []ops.Proxy{fp}, Log: proxytest.Log(t)},
			Command: []string{"true"},
		})
		if err == nil || !strings.Contains(err.Error(), "hold_timeout") {
			t.Fatalf("want a refusal naming hold_timeout, got %v", err)
		}
		if len(fp.pauses) != 0 {
			t.Fatalf("paused %d times before refusing", len(fp.pauses))
		}
	})
	t.Run("bounded", func(t *testing.T) {
		fp := &fakeProxy{}
		hold := 15 * time.Second
		start := time.Now()
		rep, err := ops.Exec(context.Background(), ops.ExecOptions{
			Options: ops.Options{Config: staticConfig(t, hold), Database: "db", Proxies: []ops.Proxy{fp},
				Timeout: time.Minute, DrainTimeout: 30 * time.Second, Log: proxytest.Log(t)},
			Command: []string{"sleep", "60"},
		})
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "hold_timeout") {
			t.Fatalf("want the held phase ended naming hold_timeout, got %v (exit %d)", err, rep.ExitCode)
		}
		if took >= hold {
			t.Fatalf("the command held traffic %s, not less than hold_timeout %s", took, hold)
		}
		fp.mu.Lock()
		defer fp.mu.Unlock()
		if len(fp.pauses) != 1 || fp.pauses[0] >= 30*time.Second || fp.resumes == 0 {
			t.Fatalf("pauses %v (want one, its drain shortened below 30s), resumes %d", fp.pauses, fp.resumes)
		}
	})
}
