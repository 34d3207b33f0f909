package config

import (
	"reflect"
	"strings"
	"testing"
)

// peer_id and the peers to forward cancel requests to, in TOML
// ([peers.<id>] tables) and in pgbouncer.ini ([peers] "1 = host=... port=..."),
// written back by ToTOML; every problem names its key.
func TestCancelPeers(t *testing.T) {
	want := map[int]*Peer{
		1: {ID: 1, Host: "10.0.1.5", Port: 6432},
		2: {ID: 2, Host: "/var/run/pauseproxy", Port: 6433},
	}
	c, err := loadString(t, trust+"peer_id = 2\n[peers.1]\nhost = \"10.0.1.5\"\n[peers.2]\nhost = \"/var/run/pauseproxy\"\nport = 6433\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.PeerID != 2 || !reflect.DeepEqual(c.CancelPeers, want) {
		t.Fatalf("peer_id %d, peers %+v", c.Proxy.PeerID, c.CancelPeers)
	}
	again, err := loadString(t, ToTOML(c))
	if err != nil || !reflect.DeepEqual(again.CancelPeers, want) || again.Proxy.PeerID != 2 {
		t.Fatalf("ToTOML round trip: %+v, %v\n%s", again, err, ToTOML(c))
	}

	dir := t.TempDir()
	c, err = LoadPgBouncerINI(writeFile(t, dir, "pgbouncer.ini", "[databases]\napp = host=127.0.0.1\n[pgbouncer]\nauth_type = trust\npeer_id = 2\n[peers]\n1 = host=10.0.1.5\n2 = host=/var/run/pauseproxy port=6433 pool_size=5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.PeerID != 2 || !reflect.DeepEqual(c.CancelPeers, want) {
		t.Fatalf("from the ini: peer_id %d, peers %+v", c.Proxy.PeerID, c.CancelPeers)
	}
	if len(c.Warnings) != 1 || !strings.HasSuffix(c.Warnings[0], "peers.2.pool_size: ignored: pauseproxy opens one connection per forwarded cancel request") {
		t.Fatalf("warnings %q", c.Warnings)
	}

	_, err = loadString(t, trust+"peer_id = 16384\n[peers.0]\nhost = \"a\"\n[peers.x]\nhost = \"b\"\n[peers.3]\nport = 70000\nhots = \"c\"\n")
	assertProblems(t, problemsOf(t, err), []string{
		"peers.0: want a peer_id 1 to 16383 as the name",
		`peers.3.hots: unknown key (did you mean "host"?)`,
		"peers.3.host: must be set: the address where peer 3 listens for clients",
		"peers.3.port: must be 1..65535, got 70000",
		"peers.x: want a peer_id 1 to 16383 as the name",
		"proxy.peer_id: must be 0 (peering off) to 16383, got 16384",
	})

	// The console's SET is checked the same way.
	if _, err := WithSetting(c, "peer_id", "16384"); err == nil {
		t.Fatal("SET peer_id = 16384 accepted")
	}
	if nc, err := WithSetting(c, "peer_id", "3"); err != nil || nc.Proxy.PeerID != 3 || !reflect.DeepEqual(nc.CancelPeers, want) {
		t.Fatalf("SET peer_id = 3: %v", err)
	}
}
