package discovery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeProbe answers from a table that tests may change.
type fakeProbe struct {
	mu    sync.Mutex
	state map[string]string // addr -> "primary", "replica", "down"
	calls int
}

func (f *fakeProbe) set(addr, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[addr] = s
}

func (f *fakeProbe) probe(ctx context.Context, addr string) (bool, error) {
	f.mu.Lock()
	s := f.state[addr]
	f.calls++
	f.mu.Unlock()
	switch s {
	case "primary":
		return true, nil
	case "replica":
		return false, nil
	case "hang":
		<-ctx.Done()
		return false, ctx.Err()
	}
	return false, errors.New("connection refused")
}

func TestStaticOneHostIsPrimaryWithoutProbe(t *testing.T) {
	probe := func(context.Context, string) (bool, error) {
		t.Error("a single host must not be probed")
		return false, nil
	}
	src := NewStatic([]string{"db.example:6543"}, probe, Options{})
	runSource(t, src)
	s := waitFor(t, src, 2*time.Second, "primary", func(s *Snapshot) bool { return s.Primary != nil })
	if s.Primary.Addr() != "db.example:6543" || s.Generation != 1 || s.Err != nil || s.Source != "static" {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
}

func TestStaticBadHost(t *testing.T) {
	src := NewStatic([]string{"db:notaport"}, nil, Options{})
	runSource(t, src)
	s := waitFor(t, src, 2*time.Second, "error", func(s *Snapshot) bool { return s.Err != nil && !errors.Is(s.Err, ErrNoAnswer) })
	if s.Primary != nil {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
}

func TestStaticSeveralHosts(t *testing.T) {
	hosts := []string{"10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3"}
	tests := []struct {
		name        string
		state       map[string]string
		wantPrimary string
		wantErr     error // errors.Is target; nil for no error
		anyErr      bool
	}{
		{name: "one writable", state: map[string]string{"10.0.0.1:5432": "replica", "10.0.0.2:5432": "primary", "10.0.0.3:5432": "replica"}, wantPrimary: "10.0.0.2:5432"},
		{name: "none writable", state: map[string]string{"10.0.0.1:5432": "replica", "10.0.0.2:5432": "replica", "10.0.0.3:5432": "replica"}},
		{name: "two writable is split brain", state: map[string]string{"10.0.0.1:5432": "primary", "10.0.0.2:5432": "replica", "10.0.0.3:5432": "primary"}, wantErr: ErrSplitBrain},
		{name: "writable and one down", state: map[string]string{"10.0.0.1:5432": "down", "10.0.0.2:5432": "replica", "10.0.0.3:5432": "primary"}, wantPrimary: "10.0.0.3:5432"},
		{name: "none writable and one down", state: map[string]string{"10.0.0.1:5432": "down", "10.0.0.2:5432": "replica", "10.0.0.3:5432": "replica"}, anyErr: true},
		{name: "hung host is bounded by the timeout", state: map[string]string{"10.0.0.1:5432": "hang", "10.0.0.2:5432": "primary", "10.0.0.3:5432": "replica"}, wantPrimary: "10.0.0.2:5432"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp := &fakeProbe{state: tt.state}
			src := NewStatic(hosts, fp.probe, Options{HTTPTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
			runSource(t, src)
			s := waitFor(t, src, 3*time.Second, "first answer", func(s *Snapshot) bool { return !errors.Is(s.Err, ErrNoAnswer) })
			got := ""
			if s.Primary != nil {
				got = s.Primary.Addr()
			}
			if got != tt.wantPrimary {
				t.Errorf("primary = %q, want %q (%s)", got, tt.wantPrimary, fmtSnap(s))
			}
			if tt.wantErr != nil && !errors.Is(s.Err, tt.wantErr) {
				t.Errorf("err = %v, want %v", s.Err, tt.wantErr)
			}
			if (tt.wantErr != nil || tt.anyErr) != (s.Err != nil) {
				t.Errorf("err = %v", s.Err)
			}
			if n := len(s.Replicas); n+btoi(s.Primary != nil) != len(hosts) {
				t.Errorf("%d replicas, want every other host listed (%s)", n, fmtSnap(s))
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestStaticFollowsPrimaryAndHurry(t *testing.T) {
	fp := &fakeProbe{state: map[string]string{"a:1": "primary", "b:1": "replica"}}
	// A long Interval: only Hurry (and the fast period after a change)
	// can make the source notice in time.
	src := NewStatic([]string{"a:1", "b:1"}, fp.probe, Options{Interval: time.Hour, FastInterval: 20 * time.Millisecond, FastPeriod: 300 * time.Millisecond})
	runSource(t, src)
	s := waitFor(t, src, 2*time.Second, "primary a", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "a:1" })
	gen := s.Generation
	time.Sleep(400 * time.Millisecond) // let the fast period end
	fp.set("a:1", "replica")
	fp.set("b:1", "primary")
	src.Hurry()
	s = waitFor(t, src, 2*time.Second, "primary b", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "b:1" })
	if s.Generation <= gen {
		t.Fatalf("generation %d after a change from %d", s.Generation, gen)
	}
}
