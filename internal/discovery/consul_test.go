package discovery

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name      string
		prev, got uint64
		want      uint64
	}{
		{name: "first answer", prev: 0, got: 42, want: 42},
		{name: "timeout without change", prev: 42, got: 42, want: 42},
		{name: "change", prev: 42, got: 50, want: 50},
		{name: "went backwards", prev: 50, got: 7, want: 0},
		{name: "zero from the start", prev: 0, got: 0, want: 1},
		{name: "zero after a real index", prev: 50, got: 0, want: 1},
	}
	for _, tt := range tests {
		if got := nextIndex(tt.prev, tt.got); got != tt.want {
			t.Errorf("%s: nextIndex(%d, %d) = %d, want %d", tt.name, tt.prev, tt.got, got, tt.want)
		}
	}
}

func TestFailoverActive(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		raw  string
		want bool
	}{
		{raw: "", want: false},
		{raw: "{}", want: false},
		{raw: ` {"leader":"node1","member":"node0"} `, want: true},
		{raw: `{"member":"node0"}`, want: true},
		{raw: `{"leader":"node1"}`, want: true},
		{raw: `{"leader":"node1","member":"node0","scheduled_at":"2026-01-02T04:00:00+00:00"}`, want: false},
		{raw: `{"leader":"node1","member":"node0","scheduled_at":"2026-01-02T03:00:00+00:00"}`, want: true},
		{raw: `not json`, want: true},
	}
	for _, tt := range tests {
		if got := failoverActive(tt.raw, now); got != tt.want {
			t.Errorf("failoverActive(%q) = %v, want %v", tt.raw, got, tt.want)
		}
	}
}

func kvm(port int, role, state string) kvMember {
	return kvMember{
		ConnURL:  fmt.Sprintf("postgres://127.0.0.1:%d/postgres", port),
		APIURL:   fmt.Sprintf("http://127.0.0.1:%d/patroni", port+1000),
		Role:     role,
		State:    state,
		Timeline: 2,
	}
}

func hm(name string, port int, tags ...string) healthMember {
	return healthMember{Name: name, Host: "127.0.0.1", Port: port, Tags: tags}
}

func TestConsulInterpret(t *testing.T) {
	c := NewConsul(ConsulConfig{Service: "pg"}, Options{}).(*consul)
	steady := kvState{leader: "a", failover: "{}", members: map[string]kvMember{"a": kvm(5432, "master", "running"), "b": kvm(5433, "replica", "running")}}
	healthOK := []healthMember{hm("a", 5432, "master", "primary"), hm("b", 5433, "replica")}
	with := func(fn func(k *kvState)) kvState {
		k := steady
		k.members = map[string]kvMember{}
		for n, m := range steady.members {
			k.members[n] = m
		}
		fn(&k)
		return k
	}
	tests := []struct {
		name         string
		st           consulState
		wantPrimary  string // name@addr, "" for none
		wantChanging bool
		wantErr      bool
	}{
		{name: "steady", st: consulState{kv: steady, kvOK: true, health: healthOK, healthOK: true}, wantPrimary: "a@127.0.0.1:5432"},
		{name: "steady, health not read yet", st: consulState{kv: steady, kvOK: true}, wantPrimary: "a@127.0.0.1:5432"},
		{name: "4.x primary role", st: consulState{kv: with(func(k *kvState) { k.members["a"] = kvm(5432, "primary", "running") }), kvOK: true, health: healthOK, healthOK: true}, wantPrimary: "a@127.0.0.1:5432"},
		{name: "failover requested", st: consulState{kv: with(func(k *kvState) { k.failover = `{"leader":"a","member":"b"}` }), kvOK: true, health: healthOK, healthOK: true}, wantPrimary: "a@127.0.0.1:5432", wantChanging: true},
		{name: "leader key gone", st: consulState{kv: with(func(k *kvState) { k.leader = "" }), kvOK: true, health: healthOK, healthOK: true}, wantChanging: true},
		{name: "new leader promoting", st: consulState{kv: with(func(k *kvState) { k.leader = "b"; k.members["b"] = kvm(5433, "promoted", "running") }), kvOK: true, health: []healthMember{hm("b", 5433, "replica")}, healthOK: true}, wantPrimary: "b@127.0.0.1:5433", wantChanging: true},
		{name: "new leader done, health lags", st: consulState{kv: with(func(k *kvState) { k.leader = "b"; k.members["b"] = kvm(5433, "master", "running") }), kvOK: true, health: []healthMember{hm("a", 5432, "master", "primary")}, healthOK: true}, wantPrimary: "b@127.0.0.1:5433", wantChanging: true},
		{name: "leader stopping", st: consulState{kv: with(func(k *kvState) { k.members["a"] = kvm(5432, "master", "stopping") }), kvOK: true, health: healthOK, healthOK: true}, wantPrimary: "a@127.0.0.1:5432", wantChanging: true},
		{name: "leader without member key, health has it", st: consulState{kv: with(func(k *kvState) { delete(k.members, "a") }), kvOK: true, health: healthOK, healthOK: true}, wantPrimary: "a@127.0.0.1:5432", wantChanging: true},
		{name: "standby leader", st: consulState{kv: with(func(k *kvState) { k.members["a"] = kvm(5432, "standby_leader", "running") }), kvOK: true}},
		{name: "empty prefix", st: consulState{kv: kvState{prefixEmpty: true}, kvOK: true}, wantErr: true},
		{name: "kv denied, health only", st: consulState{kvErr: errors.New("403"), health: healthOK, healthOK: true}, wantPrimary: "a@127.0.0.1:5432"},
		{name: "kv denied, health has two primaries", st: consulState{kvErr: errors.New("403"), health: []healthMember{hm("a", 5432, "master"), hm("b", 5433, "primary")}, healthOK: true}, wantChanging: true},
		{name: "kv denied, health has none", st: consulState{kvErr: errors.New("403"), health: []healthMember{hm("b", 5433, "replica")}, healthOK: true}, wantChanging: true},
		{name: "both failing", st: consulState{kvErr: errors.New("kv down"), healthErr: errors.New("health down")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.interpret(&tt.st)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if v == nil {
				if !tt.wantErr {
					t.Fatal("nil view without error")
				}
				return
			}
			if got := primaryKey(v.Primary); got != tt.wantPrimary || v.Changing != tt.wantChanging {
				t.Fatalf("primary %q changing %v, want %q %v (replicas %+v)", got, v.Changing, tt.wantPrimary, tt.wantChanging, v.Replicas)
			}
			if v.Primary != nil && v.Primary.Role != "primary" {
				t.Fatalf("primary role = %q", v.Primary.Role)
			}
		})
	}
}

// fakeConsul answers health and KV queries at once with a scripted
// X-Consul-Index, and records the index each query asked for.
type fakeConsul struct {
	mu      sync.Mutex
	indexes []uint64 // answered in turn; the last one repeats
	status  int      // when not 0, answer with this status
	asked   map[string][]string
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kind := "kv"
	if strings.HasPrefix(r.URL.Path, "/v1/health/") {
		kind = "health"
	}
	f.asked[kind] = append(f.asked[kind], r.URL.Query().Get("index"))
	if f.status != 0 {
		http.Error(w, "injected", f.status)
		return
	}
	idx := f.indexes[0]
	if len(f.indexes) > 1 && kind == "kv" {
		f.indexes = f.indexes[1:]
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	w.Header().Set("Content-Type", "application/json")
	if kind == "health" {
		fmt.Fprint(w, `[{"Node": {"Node": "n1", "Address": "10.0.0.9"}, "Service": {"ID": "pg/a", "Service": "pg", "Tags": ["master", "primary"], "Address": "127.0.0.1", "Port": 5432}}]`)
		return
	}
	val := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	fmt.Fprintf(w, `[{"Key": "service/pg/leader", "Value": %q}, {"Key": "service/pg/members/a", "Value": %q}]`,
		val("a"), val(`{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"master","timeline":1}`))
}

func (f *fakeConsul) asks(kind string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked[kind]...)
}

func startFakeConsul(t *testing.T, f *fakeConsul) string {
	f.asked = map[string][]string{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestConsulIndexZeroDoesNotSpin(t *testing.T) {
	// A server that answers index 0 at once, every time: the worst case
	// Consul's notes warn about.
	f := &fakeConsul{indexes: []uint64{0}}
	opts := Options{FastInterval: 50 * time.Millisecond, Logger: testLogger(t)}
	src := NewConsul(ConsulConfig{Addr: startFakeConsul(t, f), Service: "pg"}, opts)
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "primary", func(s *Snapshot) bool { return s.Primary != nil })
	if s.Primary.Name != "a" || s.Changing || s.Err != nil {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
	time.Sleep(500 * time.Millisecond)
	kv := f.asks("kv")
	// At most one query per FastInterval, plus slack for scheduling.
	if len(kv) > 14 {
		t.Fatalf("%d KV queries in ~0.5s: the watch spins", len(kv))
	}
	if len(kv) < 3 || kv[0] != "" || kv[1] != "1" {
		t.Fatalf("KV query indexes = %v, want none (0), then 1, ...", kv)
	}
}

func TestConsulIndexBackwardsResets(t *testing.T) {
	f := &fakeConsul{indexes: []uint64{10, 20, 5, 6}}
	src := NewConsul(ConsulConfig{Addr: startFakeConsul(t, f), Service: "pg"}, Options{FastInterval: 10 * time.Millisecond, Logger: testLogger(t)})
	runSource(t, src)
	deadline := time.Now().Add(3 * time.Second)
	for len(f.asks("kv")) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("KV queries = %v", f.asks("kv"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// index: none, then 10, then 20; 5 < 20 resets to 0 (no index), then 6.
	want := []string{"", "10", "20", "", "6"}
	got := f.asks("kv")[:5]
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("KV query indexes = %v, want %v", got, want)
		}
	}
}

func TestConsulErrorsBackOff(t *testing.T) {
	f := &fakeConsul{indexes: []uint64{1}, status: http.StatusInternalServerError}
	src := NewConsul(ConsulConfig{Addr: startFakeConsul(t, f), Service: "pg"}, Options{FastInterval: 20 * time.Millisecond, Interval: 200 * time.Millisecond, Logger: testLogger(t)})
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "error", func(s *Snapshot) bool { return s.Err != nil && !errors.Is(s.Err, ErrNoAnswer) })
	if s.Primary != nil {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
	time.Sleep(time.Second)
	// Backoff 20, 40, 80, 160, 320, ... (±25%): about 6 tries in 1s, not 50.
	if n := len(f.asks("kv")); n > 10 {
		t.Fatalf("%d KV queries in 1s of errors: no backoff", n)
	}
	f.mu.Lock()
	f.status = 0
	f.mu.Unlock()
	waitFor(t, src, 3*time.Second, "recovery", func(s *Snapshot) bool { return s.Err == nil && s.Primary != nil })
}

func TestConsulBadConfig(t *testing.T) {
	src := NewConsul(ConsulConfig{Addr: "127.0.0.1:1"}, Options{}) // no service
	runSource(t, src)
	waitFor(t, src, time.Second, "config error", func(s *Snapshot) bool {
		return s.Err != nil && strings.Contains(s.Err.Error(), "service")
	})
}
