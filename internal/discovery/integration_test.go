package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
)

// recorder keeps every snapshot a source publishes, with when it saw it.
type recorder struct {
	mu    sync.Mutex
	snaps []timedSnap
	stop  chan struct{}
	done  chan struct{}
}

type timedSnap struct {
	at time.Time
	s  *Snapshot
}

func record(src Source) *recorder {
	r := &recorder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		var last *Snapshot
		for {
			ch := src.Changed()
			if s := src.Snapshot(); s != last {
				last = s
				r.mu.Lock()
				r.snaps = append(r.snaps, timedSnap{time.Now(), s})
				r.mu.Unlock()
			}
			select {
			case <-ch:
			case <-r.stop:
				return
			}
		}
	}()
	return r
}

func (r *recorder) finish() []timedSnap {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snaps
}

// switchoverCheck runs a switchover on c while src watches, and checks what
// src published: the generation moved on, Changing went true then false, and
// the final primary is the candidate at its address. It logs the timings.
func switchoverCheck(t *testing.T, c *patronitest.Cluster, src Source) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := waitFor(t, src, 15*time.Second, "the leader, settled", func(s *Snapshot) bool {
		return s.Err == nil && s.Primary != nil && s.Primary.Name == leader.Name && !s.Changing
	})
	if s.Primary.Addr() != leader.PGAddr() || s.Primary.Role != "primary" || len(s.Replicas) != len(c.Members)-1 {
		t.Fatalf("before switchover: %s; leader %s at %s", fmtSnap(s), leader.Name, leader.PGAddr())
	}
	gen0 := s.Generation
	var candidate *patronitest.Node
	for _, n := range c.Members {
		if n != leader {
			candidate = n
		}
	}

	rec := record(src)
	// Writability of the candidate, watched on the side.
	writable := make(chan time.Time, 1)
	go func() {
		if err := c.WaitWritable(ctx, candidate); err == nil {
			writable <- time.Now()
		}
		close(writable)
	}()
	start := time.Now()
	if err := c.Switchover(ctx, candidate.Name); err != nil {
		t.Fatal(err)
	}
	switched := time.Now()
	s = waitFor(t, src, 20*time.Second, "the candidate, settled", func(s *Snapshot) bool {
		return s.Err == nil && s.Primary != nil && s.Primary.Name == candidate.Name && !s.Changing
	})
	settled := time.Now()
	wAt, ok := <-writable
	if !ok {
		t.Fatalf("candidate %s never became writable", candidate.Name)
	}
	snaps := rec.finish()

	if s.Primary.Addr() != candidate.PGAddr() || s.Generation <= gen0 {
		t.Fatalf("after switchover: %s; want %s at %s with generation > %d", fmtSnap(s), candidate.Name, candidate.PGAddr(), gen0)
	}
	var (
		firstChanging, firstNew time.Time
		changingWithOld         bool
		log                     strings.Builder
	)
	for _, ts := range snaps {
		fmt.Fprintf(&log, "\n  +%v %s", ts.at.Sub(start).Round(time.Millisecond), fmtSnap(ts.s))
		if ts.s.Changing && firstChanging.IsZero() {
			firstChanging = ts.at
			changingWithOld = ts.s.Primary != nil && ts.s.Primary.Name == leader.Name
		}
		if ts.s.Primary != nil && ts.s.Primary.Name == candidate.Name && firstNew.IsZero() {
			firstNew = ts.at
		}
	}
	t.Logf("snapshots during the switchover:%s", log.String())
	if firstChanging.IsZero() {
		t.Fatalf("Changing never went true during the switchover")
	}
	since := func(at time.Time) string { return at.Sub(start).Round(time.Millisecond).String() }
	t.Logf("%s: switchover %s -> %s: first Changing +%s (old primary still named: %v), candidate named +%s, candidate writable +%s, settled (Changing false) +%s, Patroni API answered +%s; generation %d -> %d",
		s.Source, leader.Name, candidate.Name, since(firstChanging), changingWithOld, since(firstNew), since(wAt), since(settled), since(switched), gen0, s.Generation)
	if s.Source == "consul" && !changingWithOld {
		t.Errorf("the failover key did not give early notice: the first Changing snapshot did not name the old primary")
	}
}

// The REST API is https with client certificates required: the source
// trusts the cluster's CA and presents its client certificate, to the
// configured member and to the one it learns from /cluster.
func TestPatroniRealClusterSwitchover(t *testing.T) {
	c := etcdShared.get(t)
	api := PatroniAPI{CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile}
	// One URL only: the other member is learned from /cluster.
	src := NewPatroni(c.PatroniURLs()[:1], Options{Logger: testLogger(t), PatroniAPI: api})
	runSource(t, src)
	switchoverCheck(t, c, src)

	// Without the CA, or without the client certificate, no member
	// answers, and the error says why.
	for _, tc := range []struct {
		name string
		api  PatroniAPI
		want string
	}{
		{"no CA", PatroniAPI{CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile}, "certificate signed by unknown authority"},
		// TLS 1.3 refuses after the handshake: the client sees the
		// alert, a reset or EOF, and the hint in every case.
		{"no client certificate", PatroniAPI{CAFile: c.CAFile}, "asked for a client certificate"},
	} {
		src := NewPatroni(c.PatroniURLs()[:1], Options{Logger: testLogger(t), PatroniAPI: tc.api})
		runSource(t, src)
		s := waitFor(t, src, 5*time.Second, tc.name+": an error", func(s *Snapshot) bool { return s.Err != nil && !errors.Is(s.Err, ErrNoAnswer) })
		if !strings.Contains(s.Err.Error(), tc.want) || !strings.Contains(s.Err.Error(), "GET "+c.PatroniURLs()[0]+"/cluster") {
			t.Errorf("%s: err = %v, want %q naming the request", tc.name, s.Err, tc.want)
		}
	}
}

func TestConsulRealClusterSwitchover(t *testing.T) {
	c := consulShared.get(t)
	src := NewConsul(ConsulConfig{Addr: c.ConsulAddr, Service: c.Scope, Namespace: c.Namespace}, Options{Logger: testLogger(t)})
	runSource(t, src)
	switchoverCheck(t, c, src)
}

// TestConsulRealAgentBlockingQueries drives a fake Patroni's keys and
// service on the real agent of the Consul cluster, under another scope:
// the blocking queries must wake on each change, long before their wait
// (5s) runs out.
func TestConsulRealAgentBlockingQueries(t *testing.T) {
	c := consulShared.get(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client, err := api.NewClient(&api.Config{Address: c.ConsulAddr, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	scope := "fake-" + c.Scope
	kv := client.KV()
	put := func(key, val string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: "service/" + scope + "/" + key, Value: []byte(val)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	member := func(port int, role string) string {
		return fmt.Sprintf(`{"conn_url":"postgres://127.0.0.1:%d/postgres","api_url":"http://127.0.0.1:1/patroni","state":"running","role":%q,"timeline":1}`, port, role)
	}
	register := func(name string, port int, tags ...string) {
		t.Helper()
		reg := &api.AgentServiceRegistration{
			ID: scope + "/" + name, Name: scope, Address: "127.0.0.1", Port: port, Tags: tags,
			Check: &api.AgentServiceCheck{TTL: "1m", Status: api.HealthPassing},
		}
		if err := client.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		kv.DeleteTree("service/"+scope+"/", nil)
		client.Agent().ServiceDeregister(scope + "/a")
		client.Agent().ServiceDeregister(scope + "/b")
	})
	put("members/a", member(6001, "master"))
	put("members/b", member(6002, "replica"))
	put("leader", "a")
	register("a", 6001, "master", "primary")
	register("b", 6002, "replica")

	// A slow Interval: nothing here may depend on polling.
	src := NewConsul(ConsulConfig{Addr: c.ConsulAddr, Service: scope}, Options{Interval: time.Minute, Logger: testLogger(t)})
	runSource(t, src)
	s := waitFor(t, src, 5*time.Second, "primary a", func(s *Snapshot) bool { return s.Primary != nil && !s.Changing })
	if s.Primary.Name != "a" || s.Primary.Addr() != "127.0.0.1:6001" {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
	gen := s.Generation
	// Let both watches settle into a blocking wait.
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	put("failover", `{"leader":"a","member":"b"}`)
	s = waitFor(t, src, 2*time.Second, "changing from the failover key", func(s *Snapshot) bool { return s.Changing })
	t.Logf("failover key seen after %v", time.Since(start).Round(time.Millisecond))
	if s.Planned != `{"leader":"a","member":"b"}` || s.Primary == nil || s.Primary.Name != "a" {
		t.Fatalf("a requested switchover: Planned %q, primary %s; want the failover key's value and still a", s.Planned, fmtSnap(s))
	}

	start = time.Now()
	put("leader", "b")
	put("members/b", member(6002, "master"))
	put("members/a", member(6001, "demoted"))
	put("failover", "{}")
	s = waitFor(t, src, 2*time.Second, "primary b from KV", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "b" })
	if !s.Changing || s.Generation != gen+1 || s.Primary.Addr() != "127.0.0.1:6002" {
		t.Fatalf("KV moved, health not yet: %s", fmtSnap(s))
	}
	register("a", 6001, "replica")
	register("b", 6002, "master", "primary")
	s = waitFor(t, src, 2*time.Second, "settled", func(s *Snapshot) bool { return !s.Changing })
	if s.Primary == nil || s.Primary.Name != "b" || s.Generation != gen+1 || s.Planned != "" {
		t.Fatalf("settled: %s", fmtSnap(s))
	}
	t.Logf("leader change settled after %v", time.Since(start).Round(time.Millisecond))
}
