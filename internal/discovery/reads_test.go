package discovery

import (
	"context"
	"testing"
	"time"
)

// Patroni's member tags reach the snapshot: a replica tagged nofailover or
// noloadbalance takes no reads.
func TestPatroniTags(t *testing.T) {
	f := newFakePatroni(t, "a")
	f.mu.Lock()
	f.cluster = `{"members": [
		{"name": "a", "role": "leader", "state": "running", "api_url": "` + f.members[0].srv.URL + `/patroni", "host": "127.0.0.1", "port": 5432},
		{"name": "b", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 5433, "lag": 0, "tags": {"nofailover": true}},
		{"name": "c", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 5434, "lag": 0, "tags": {"noloadbalance": "true", "clonefrom": true}},
		{"name": "d", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 5435, "lag": 0, "tags": {"nofailover": false}}
	]}`
	f.members[0].pgRole = "master"
	f.mu.Unlock()
	src := NewPatroni(f.urls(), fastOpts(t))
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "answer", func(s *Snapshot) bool { return s.Err == nil && len(s.Replicas) == 3 })
	got := map[string][2]bool{}
	for _, m := range s.Replicas {
		got[m.Name] = [2]bool{m.NoFailover, m.NoLoadBalance}
	}
	want := map[string][2]bool{"b": {true, false}, "c": {false, true}, "d": {false, false}}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: nofailover, noloadbalance = %v, want %v", n, got[n], w)
		}
	}
}

// Through Consul a replica's lag is the leader's xlog_location minus its
// own (Patroni's computation for /cluster), and its tags are read from its
// member key.
func TestConsulReplicaLagAndTags(t *testing.T) {
	c := NewConsul(ConsulConfig{Service: "pg"}, Options{}).(*consul)
	a, b, d := kvm(5432, "master", "running"), kvm(5433, "replica", "running"), kvm(5434, "replica", "running")
	a.XlogLocation, b.XlogLocation, d.XlogLocation = 5000, 4000, 0
	b.Tags = map[string]any{"noloadbalance": true}
	st := consulState{kv: kvState{leader: "a", members: map[string]kvMember{"a": a, "b": b, "d": d}}, kvOK: true}
	v, err := c.interpret(&st)
	if err != nil || v.Primary == nil || len(v.Replicas) != 2 {
		t.Fatalf("interpret: %v %+v", err, v)
	}
	for _, m := range v.Replicas {
		switch m.Name {
		case "b":
			if m.LagBytes != 1000 || !m.NoLoadBalance {
				t.Errorf("b: lag %d noloadbalance %v, want 1000 true", m.LagBytes, m.NoLoadBalance)
			}
		case "d":
			if m.LagBytes != -1 {
				t.Errorf("d without a position: lag %d, want -1 (unknown)", m.LagBytes)
			}
		}
	}
}

// NewStaticRoles probes a single host too (its role matters to a replica
// target) and records each replica's replay delay.
func TestStaticRolesProbesEveryHost(t *testing.T) {
	probe := func(ctx context.Context, addr string) (bool, time.Duration, error) {
		if addr == "10.0.0.1:5432" {
			return false, 3 * time.Second, nil
		}
		return true, 0, nil
	}
	src := NewStaticRoles([]string{"10.0.0.1:5432"}, probe, fastOpts(t))
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "answer", func(s *Snapshot) bool { return len(s.Replicas) == 1 })
	if s.Primary != nil || s.Replicas[0].Role != "replica" || s.Replicas[0].ReplayDelay != 3*time.Second {
		t.Fatalf("snapshot = %s, delay %s", fmtSnap(s), s.Replicas[0].ReplayDelay)
	}
	src2 := NewStaticRoles([]string{"10.0.0.1:5432", "10.0.0.2:5432"}, probe, fastOpts(t))
	runSource(t, src2)
	s = waitFor(t, src2, 3*time.Second, "answer", func(s *Snapshot) bool { return s.Primary != nil })
	if s.Primary.Addr() != "10.0.0.2:5432" || len(s.Replicas) != 1 {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
}
