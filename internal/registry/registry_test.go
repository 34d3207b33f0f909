package registry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// consulAgent is the package's Consul dev agent, started by TestMain (about a
// second).
var consulAgent *patronitest.ConsulAgent

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	a, err := patronitest.StartConsul(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry tests: start Consul:", err)
		os.Exit(1)
	}
	consulAgent = a
	code := m.Run()
	a.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proxyConfig is a validated config of an instance listening on port that
// registers with the package's agent, serving dbs.
func proxyConfig(t *testing.T, port int, dbs ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[proxy]\nauth_type = \"trust\"\nlisten_port = %d\nunix_socket_dir = \"\"\nconsul_register = true\nconsul_register_addr = %q\nconsul_register_service = %q\nconsul_register_tags = [\"test\"]\n",
		port, consulAgent.Addr, "pp-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	for _, db := range dbs {
		fmt.Fprintf(&b, "[databases.%s]\n", db)
	}
	path := t.TempDir() + "/pauseproxy.toml"
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitInstances polls Lookup from cfg's side until ok accepts what it
// returns.
func waitInstances(t *testing.T, cfg *config.Config, what string, ok func([]Instance) bool) []Instance {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _, err := Lookup(context.Background(), cfg)
		if err == nil && ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: instances %+v, err %v", what, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two instances register; each finds the other, not itself, with its
// address, tags' owner node, databases and a passing check; a reload
// updates the databases; Close deregisters.
func TestRegisterLookupDeregister(t *testing.T) {
	cfgA, cfgB := proxyConfig(t, 16432, "app"), proxyConfig(t, 16433, "app", "reports")
	a, b := New(proxytest.Log(t), "test"), New(proxytest.Log(t), "test")
	defer a.Close()
	defer b.Close()
	a.Update(cfgA)
	b.Update(cfgB)

	got := waitInstances(t, cfgA, "A finds B", func(in []Instance) bool { return len(in) == 1 })
	want := Instance{ID: ServiceID(&cfgB.Proxy), Addr: "127.0.0.1:16433", Node: consulAgent.Node, Status: "passing", Databases: []string{"app", "reports"}}
	if !instanceEqual(got[0], want) {
		t.Fatalf("A found %+v, want %+v", got[0], want)
	}
	if got[0].ID != "pp-testregisterlookupderegister-127.0.0.1-16433" || !got[0].Serves("reports") || got[0].Serves("other") {
		t.Fatalf("ID %q, Serves wrong for %+v", got[0].ID, got[0])
	}
	got = waitInstances(t, cfgB, "B finds A", func(in []Instance) bool { return len(in) == 1 })
	if got[0].Addr != "127.0.0.1:16432" {
		t.Fatalf("B found %+v", got)
	}

	// A reload that adds a database updates the registration.
	a.Update(proxyConfig(t, 16432, "app", "billing"))
	waitInstances(t, cfgB, "A's new databases", func(in []Instance) bool {
		return len(in) == 1 && slices.Equal(in[0].Databases, []string{"app", "billing"})
	})

	b.Close()
	b.Close() // twice is fine
	waitInstances(t, cfgA, "B deregistered", func(in []Instance) bool { return len(in) == 0 })
}

func instanceEqual(a, b Instance) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Node == b.Node && a.Status == b.Status && slices.Equal(a.Databases, b.Databases)
}

// After the agent restarts without its state, the instance registers
// again, saying so once; while the agent is down it logs one failure, not
// one per attempt.
func TestRegisterAgainAfterAgentRestart(t *testing.T) {
	cfg, other := proxyConfig(t, 16434, "app"), proxyConfig(t, 16435)
	logs := &proxytest.SyncBuffer{}
	r := New(slog.New(slog.NewTextHandler(logs, nil)), "test")
	r.interval = 100 * time.Millisecond
	defer r.Close()
	r.Update(cfg)
	waitInstances(t, other, "registered", func(in []Instance) bool { return len(in) == 1 })

	// A restart too quick for the registrar to notice.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	consulAgent.Down()
	if err := consulAgent.Up(ctx); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "registered again", func(in []Instance) bool { return len(in) == 1 && in[0].Status == "passing" })
	if text := logs.String(); !strings.Contains(text, "registered in Consul again") {
		t.Fatalf("no line about registering again:\n%s", text)
	}
	before := len(logs.String())

	// An agent down for a while: one line when the registration starts
	// failing, one when it is back, none per retry.
	consulAgent.Down()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String()[before:], "Consul registration failing; retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a retry or two
	if err := consulAgent.Up(ctx); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, other, "registered after the agent came back", func(in []Instance) bool { return len(in) == 1 && in[0].Status == "passing" })
	t.Logf("registrar's log:\n%s", logs.String())
	if text := logs.String()[before:]; strings.Count(text, "\n") != 2 || strings.Count(text, "Consul registration failing") != 1 || strings.Count(text, "registered in Consul again") != 1 {
		t.Fatalf("want one line per change of state, got:\n%s", text)
	}
}

// Lookup fails, naming the agent, when the agent cannot be reached: the
// commands must not pause fewer proxies than there are.
func TestLookupUnreachable(t *testing.T) {
	cfg := proxyConfig(t, 16436)
	cfg.Proxy.ConsulRegisterAddr = "127.0.0.1:1"
	_, _, err := Lookup(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "consul agent 127.0.0.1:1: health of service") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v", err)
	}
}

// Turning consul_register off (a reload) deregisters; Close then has
// nothing to do.
func TestRegisterOff(t *testing.T) {
	cfg, other := proxyConfig(t, 16437, "app"), proxyConfig(t, 16438)
	r := New(proxytest.Log(t), "test")
	defer r.Close()
	r.Update(cfg)
	waitInstances(t, other, "registered", func(in []Instance) bool { return len(in) == 1 })
	off := *cfg
	off.Proxy.ConsulRegister = false
	r.Update(&off)
	waitInstances(t, other, "deregistered", func(in []Instance) bool { return len(in) == 0 })
}

// An instance listening on every address registers without an address:
// the others find it at its node's, and it does not find itself.
func TestRegisterNodeAddress(t *testing.T) {
	cfg, other := proxyConfig(t, 16439, "app"), proxyConfig(t, 16440)
	cfg.Proxy.ListenAddr, cfg.Proxy.ConsulRegisterAdvertise = "0.0.0.0", ":16439"
	r := New(proxytest.Log(t), "test")
	defer r.Close()
	r.Update(cfg)
	got := waitInstances(t, other, "registered", func(in []Instance) bool { return len(in) == 1 })
	if got[0].Addr != "127.0.0.1:16439" || got[0].ID != "pp-testregisternodeaddress-16439" {
		t.Fatalf("found %+v, want the node's address 127.0.0.1", got[0])
	}
	if self, _, err := Lookup(context.Background(), cfg); err != nil || len(self) != 0 {
		t.Fatalf("the instance finds %+v (%v), want not itself", self, err)
	}
}
