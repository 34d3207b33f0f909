package patronitest

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClusterSwitchover starts a cluster (its REST API over https with
// client certificates and authentication), checks the helpers against it,
// and measures a switchover from the outside: how long the switchover API
// call takes, how long no node accepts writes, and how long the candidate's
// /primary answers 200 before the candidate accepts writes.
func TestClusterSwitchover(t *testing.T) {
	start := time.Now()
	c := Require(t, Options{TLS: true, APIUsername: "pauseproxy", APIPassword: "api-secret"})
	t.Logf("cluster %s started in %v", c.Scope, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	if len(c.Members) != 2 || len(c.PatroniURLs()) != 2 {
		t.Fatalf("members %d, urls %v", len(c.Members), c.PatroniURLs())
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitWritable(ctx, leader); err != nil {
		t.Fatal(err)
	}
	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas %v: %v", replicas, err)
	}
	cand := replicas[0]
	if rec, err := c.InRecovery(ctx, cand); err != nil || !rec {
		t.Fatalf("replica %s: in recovery %v, %v", cand.Name, rec, err)
	}
	if !strings.HasPrefix(leader.APIURL, "https://") {
		t.Fatalf("API URL %s, want https", leader.APIURL)
	}
	// Without credentials Patroni refuses POST /switchover (401) and
	// switches nothing over.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, leader.APIURL+"/switchover", strings.NewReader(`{"leader": "`+leader.Name+`"}`))
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST /switchover without credentials: %s, want 401", resp.Status)
	}
	out, err := c.Patronictl(ctx, "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), leader.Name) || !strings.Contains(string(out), cand.Name) {
		t.Fatalf("patronictl list:\n%s", out)
	}

	// Watch the old and new primary every 20ms while the switchover runs.
	var (
		mu                                 sync.Mutex
		oldLastWritable, primary200, newWr time.Time
	)
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for wctx.Err() == nil {
			if rec, err := c.InRecovery(wctx, leader); err == nil && !rec {
				mu.Lock()
				oldLastWritable = time.Now()
				mu.Unlock()
			}
			sleepCtx(wctx, 20*time.Millisecond)
		}
	})
	wg.Go(func() {
		for wctx.Err() == nil {
			now := time.Now()
			if rec, err := c.InRecovery(wctx, cand); err == nil && !rec {
				mu.Lock()
				newWr = now
				mu.Unlock()
				return
			}
			sleepCtx(wctx, 20*time.Millisecond)
		}
	})
	wg.Go(func() {
		for wctx.Err() == nil {
			now := time.Now()
			req, _ := http.NewRequestWithContext(wctx, http.MethodGet, cand.APIURL+"/primary", nil)
			if resp, err := c.HTTPClient().Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					primary200 = now
					mu.Unlock()
					return
				}
			}
			sleepCtx(wctx, 20*time.Millisecond)
		}
	})
	swStart := time.Now()
	if err := c.Switchover(ctx, cand.Name); err != nil {
		t.Fatal(err)
	}
	swDone := time.Now()
	if err := c.WaitWritable(ctx, cand); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := !newWr.IsZero() && !primary200.IsZero()
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wcancel()
	wg.Wait()
	if newWr.IsZero() || primary200.IsZero() || oldLastWritable.IsZero() {
		t.Fatalf("not observed: old writable %v, /primary 200 %v, new writable %v", oldLastWritable, primary200, newWr)
	}
	t.Logf("switchover %s -> %s: API call %v; no writable primary for %v (old last writable +%v, new first writable +%v); candidate /primary 200 at +%v, %v before it accepted writes",
		leader.Name, cand.Name, swDone.Sub(swStart).Round(time.Millisecond),
		newWr.Sub(oldLastWritable).Round(time.Millisecond),
		oldLastWritable.Sub(swStart).Round(time.Millisecond), newWr.Sub(swStart).Round(time.Millisecond),
		primary200.Sub(swStart).Round(time.Millisecond), newWr.Sub(primary200).Round(time.Millisecond))

	if l, err := c.Leader(ctx); err != nil || l != cand {
		t.Fatalf("leader after switchover = %v, %v; want %s", l, err, cand.Name)
	}

	// Stop leaves nothing behind.
	dataDirs := []string{c.Members[0].DataDir, c.Members[1].DataDir}
	pids := map[string]int{}
	for _, d := range dataDirs {
		if b, err := os.ReadFile(d + "/postmaster.pid"); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil {
				pids[d] = pid
			}
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil { // twice is fine
		t.Fatal(err)
	}
	for d, pid := range pids {
		if alive(pid) {
			t.Errorf("postmaster %d of %s still runs after Stop", pid, d)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop: %v", c.Dir, err)
	}
}

func TestConsulBinaryMissing(t *testing.T) {
	t.Setenv("PAUSEPROXY_CONSUL", "/nonexistent/consul")
	t.Setenv("HOME", t.TempDir())
	// With the real cache paths present this finds them; what matters is
	// that it never returns a path that is not executable.
	path, err := ConsulBinary(context.Background(), "/nonexistent/explicit")
	if err == nil && !isExecutable(path) {
		t.Fatalf("ConsulBinary = %q, not executable", path)
	}
	if err != nil && !strings.Contains(err.Error(), "PAUSEPROXY_CONSUL") {
		t.Fatalf("error does not say how to fix it: %v", err)
	}
}
