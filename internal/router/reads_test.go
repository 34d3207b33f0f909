package router

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// A role change holds only the pools bound for the primary; a PAUSE holds
// the replicas' too; a read-only database waits only for a replica.
func TestHoldsSpareReplicaPools(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pauseproxy.toml")
	body := `[proxy]
listen_addr = "127.0.0.1"
unix_socket_dir = ""
auth_type = "trust"
[databases.app]
host = "127.0.0.1"
port = 1
user = "u"
read_only_routing = "replica"
[databases.ro]
host = "127.0.0.1"
port = 1
user = "u"
target_session_attrs = "read-only"
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(r.Close)
	app, _ := r.Database("app")
	primary, err := app.poolFor("u", serverLogin{User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	replica, err := app.poolForRole("u", true)
	if err != nil {
		t.Fatal(err)
	}
	app.Hold(HoldRoleChange)
	if !primary.Held() || replica.Held() {
		t.Fatalf("role change: primary held %v, replica held %v; want true, false", primary.Held(), replica.Held())
	}
	app.Hold("pause")
	if !replica.Held() {
		t.Fatal("PAUSE does not hold the replica pool")
	}
	app.Unhold("pause")
	if !primary.Held() || replica.Held() {
		t.Fatalf("after RESUME during a role change: primary held %v, replica held %v", primary.Held(), replica.Held())
	}
	app.Unhold(HoldRoleChange)
	if primary.Held() || replica.Held() {
		t.Fatal("still held")
	}

	ro, _ := r.Database("ro")
	p, err := ro.poolFor("u", serverLogin{User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Target().Host != replicaHost {
		t.Fatalf("read-only database's pool dials %q, want the replicas", p.Target().Host)
	}
	ro.SetReplicas(nil, nil)
	if !p.Held() {
		t.Fatal("read-only database with no replica is not held")
	}
	ro.SetReplicas([]Addr{{Host: "10.0.0.2", Port: 5432}}, &Addr{Host: "10.0.0.1", Port: 5432})
	if p.Held() {
		t.Fatal("read-only database held with a replica")
	}
	gen := p.Target().Gen
	ro.SetReplicas([]Addr{{Host: "10.0.0.3", Port: 5432}}, nil)
	if p.Target().Gen == gen || p.Target().Gen < replicaGenBase {
		t.Fatalf("a changed replica set kept generation %d (was %d)", p.Target().Gen, gen)
	}
}
