package failover_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// publishMembers makes a snapshot with primary and replicas current.
func (f *fakeSource) publishMembers(primary *discovery.Member, replicas ...discovery.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = &discovery.Snapshot{Generation: f.snap.Generation + 1, Source: "fake", Primary: primary, Replicas: replicas, Updated: time.Now()}
	close(f.changed)
	f.changed = make(chan struct{})
}

// TestReadWatcherChoosesReplicas feeds a ReadWatcher snapshots and checks
// which replicas a read-only database reads from: lagging, stopped,
// tagged and promoting replicas are out, and come back when they recover;
// with none usable the database is held.
func TestReadWatcherChoosesReplicas(t *testing.T) {
	p := proxytest.Start(t, `[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"

[databases.ro]
host = "127.0.0.1"
target_session_attrs = "read-only"
max_replica_lag = "1MB"
`)
	db, ok := p.Router.Database("ro")
	if !ok {
		t.Fatal("no database ro")
	}
	src := newFakeSource()
	w := failover.NewReadWatcher(db, src, failover.ReadOptions{MaxLagBytes: 1 << 20, Recheck: 20 * time.Millisecond, Log: p.Log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx, true); close(done) }()
	t.Cleanup(func() { cancel(); <-done; <-src.ran })

	member := func(name string, port int, role, state string, lag int64) discovery.Member {
		return discovery.Member{Name: name, Host: "10.0.0.1", Port: port, Role: role, State: state, LagBytes: lag}
	}
	primary := member("p", 5432, "primary", "running", -1)
	a := member("a", 5433, "replica", "running", 0)
	b := member("b", 5434, "replica", "streaming", 10<<20)
	c := member("c", 5435, "replica", "running", 0)
	c.NoLoadBalance = true
	d := member("d", 5436, "replica", "stopped", -1)
	e := member("e", 5437, "", "running", 0) // being promoted
	f := member("f", 5438, "replica", "running", 0)
	f.NoFailover = true

	want := func(what string, addrs ...string) {
		t.Helper()
		proxytest.Eventually(t, 5*time.Second, what, func() bool {
			return slices.Equal(db.Reads().Replicas, addrs)
		})
	}
	held := func() bool {
		_, reasons := db.Held()
		return slices.Contains(reasons, "no-replica")
	}

	src.publishMembers(&primary, a, b, c, d, e, f)
	want("only the replica within max_replica_lag, running, untagged", "10.0.0.1:5433")
	if held() {
		t.Fatal("held with a usable replica")
	}

	b.LagBytes = 1000
	src.publishMembers(&primary, a, b, c, d, e, f)
	want("b back once it caught up", "10.0.0.1:5433", "10.0.0.1:5434")

	// a is promoted: Patroni names it leader before it takes writes.
	a.Role = "primary"
	src.publishMembers(&a, b)
	want("the promoted replica leaves the read pool", "10.0.0.1:5434")

	b.State = "stopped"
	src.publishMembers(&a, b)
	want("no usable replica")
	proxytest.Eventually(t, 5*time.Second, "held while no replica is usable", held)

	b.State = "running"
	src.publishMembers(&a, b)
	want("b back", "10.0.0.1:5434")
	proxytest.Eventually(t, 5*time.Second, "released", func() bool { return !held() })
}
