package ops_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/pauseproxy/pauseproxy/internal/ops"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/registry"
)

// Proxy B lists no peers: it finds A in Consul. A lists B and finds it in
// Consul too: B is paused once. ctl --all pauses and resumes both, saying
// where each came from.
func TestPeersFromConsul(t *testing.T) {
	waitHealthy(t)
	ctx := context.Background()
	for _, tc := range []struct {
		p        *proxyProc
		peer     *proxyProc
		wantFrom string
	}{
		{proxyB, proxyA, "consul pauseproxy-127.0.0.1-"},
		{proxyA, proxyB, "peers, consul pauseproxy-127.0.0.1-"},
	} {
		proxies, err := ops.Consoles(ctx, tc.p.loadConfig(t), true, "db", proxytest.Log(t))
		if err != nil {
			t.Fatal(err)
		}
		desc := ops.Describe(proxies)
		for _, p := range proxies {
			p.Close()
		}
		want := fmt.Sprintf("127.0.0.1:%d (this proxy), 127.0.0.1:%d (%s%d on node ", tc.p.port, tc.peer.port, tc.wantFrom, tc.peer.port)
		if len(proxies) != 2 || !strings.HasPrefix(desc, want) || !strings.HasSuffix(desc, ", check passing)") {
			t.Fatalf("proxy %s: %d proxies: %s\nwant %s...", tc.p.name, len(proxies), desc, want)
		}
	}

	code, out, errs := runBinary(t, "ctl", "pause", "--config", proxyB.path, "--database", "db", "--all", "--expire", "60s")
	if code != 0 || !strings.Contains(out, "paused db on 2 proxies") || !strings.Contains(errs, `msg="proxies to pause" count=2`) ||
		!strings.Contains(errs, fmt.Sprintf("127.0.0.1:%d (consul pauseproxy-127.0.0.1-%d", proxyA.port, proxyA.port)) {
		t.Fatalf("ctl pause --all: %d\n%s%s", code, out, errs)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if !p.state(t).Paused {
			t.Fatalf("proxy %s not paused", p.name)
		}
	}
	if code, out, errs := runBinary(t, "ctl", "resume", "--config", proxyB.path, "--all"); code != 0 || !strings.Contains(out, "resumed every database on 2 proxies") {
		t.Fatalf("ctl resume --all: %d\n%s%s", code, out, errs)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if p.state(t).Paused {
			t.Fatalf("proxy %s still paused", p.name)
		}
	}
}

// A third proxy that registers is paused with the others; stopped with
// SIGTERM, it deregisters at once and the commands stop counting on it.
func TestRegisteredProxyStops(t *testing.T) {
	waitHealthy(t)
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c := &proxyProc{name: "C", port: port, source: "patroni"}
	if err := c.start(testDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop()
		os.Remove(c.path)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.waitVerified(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.waitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runBinary(t, "ctl", "pause", "--config", proxyB.path, "--database", "db", "--all", "--expire", "60s"); code != 0 || !strings.Contains(out, "paused db on 3 proxies") {
		t.Fatalf("ctl pause --all with C: %d\n%s%s", code, out, errs)
	}
	if !c.state(t).Paused {
		t.Fatal("C not paused")
	}
	if code, out, errs := runBinary(t, "ctl", "resume", "--config", proxyB.path, "--all"); code != 0 || !strings.Contains(out, "on 3 proxies") {
		t.Fatalf("ctl resume --all with C: %d\n%s%s", code, out, errs)
	}

	cfg := c.loadConfig(t)
	id := registry.ServiceID(&cfg.Proxy)
	c.cmd.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	other := proxyB.loadConfig(t)
	proxytest.Eventually(t, 5*time.Second, "C deregistered", func() bool {
		found, _, err := registry.Lookup(ctx, other)
		return err == nil && !slices.ContainsFunc(found, func(in registry.Instance) bool { return in.ID == id })
	})
	t.Logf("C deregistered %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	c.stop()
	if !strings.Contains(c.logs.String(), `msg="deregistered from Consul" id=`+id) {
		t.Fatalf("C's log does not say it deregistered:\n%s", c.logs.Tail(20))
	}
	if code, out, errs := runBinary(t, "ctl", "pause", "--config", proxyB.path, "--database", "db", "--all", "--expire", "60s"); code != 0 || !strings.Contains(out, "paused db on 2 proxies") {
		t.Fatalf("ctl pause --all after C stopped: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runBinary(t, "ctl", "resume", "--config", proxyB.path, "--all"); code != 0 {
		t.Fatalf("ctl resume --all: %d\n%s", code, errs)
	}
}

// When Consul cannot be asked, the commands fail before pausing anything,
// rather than pause fewer proxies than there are.
func TestConsulUnreachableFails(t *testing.T) {
	waitHealthy(t)
	body, err := os.ReadFile(proxyB.path)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testDir, "consul-unreachable.toml")
	body = regexp.MustCompile(`(?m)^consul_register_addr = .*$`).ReplaceAll(body, []byte(`consul_register_addr = "127.0.0.1:1"`))
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	want := "find the other proxies registered in Consul (consul_register): consul agent 127.0.0.1:1: health of service pauseproxy:"
	for _, args := range [][]string{
		{"ctl", "pause", "--config", path, "--database", "db", "--all", "--expire", "60s"},
		{"switchover", "--config", path, "--database", "db"},
	} {
		code, out, errs := runBinary(t, args...)
		if code != 1 || !strings.Contains(errs, want) || !strings.Contains(errs, "refusing to go on with only some of them") {
			t.Fatalf("%v: exit %d, want 1 and %q:\n%s%s", args, code, want, out, errs)
		}
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if p.state(t).Paused {
			t.Fatalf("proxy %s paused", p.name)
		}
	}
}

// An instance that says it serves other databases is left out of a
// command on db; one registered on another node with a loopback address
// cannot be reached from here, and fails the command.
func TestConsulPeersLeftOutOrRefused(t *testing.T) {
	client, err := api.NewClient(&api.Config{Address: cluster.ConsulAddr, Transport: &http.Transport{DisableKeepAlives: true}})
	if err != nil {
		t.Fatal(err)
	}
	reg := &api.CatalogRegistration{
		Node: "elsewhere", Address: "10.9.9.9",
		Service: &api.AgentService{ID: "pauseproxy-elsewhere", Service: "pauseproxy", Address: "127.0.0.1", Port: 6432,
			Meta: map[string]string{registry.MetaDatabases: "other,reports"}},
	}
	if _, err := client.Catalog().Register(reg, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Catalog().Deregister(&api.CatalogDeregistration{Node: "elsewhere"}, nil) })

	cfg := proxyB.loadConfig(t)
	logs := &proxytest.SyncBuffer{}
	proxies, err := ops.Consoles(context.Background(), cfg, true, "db", slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		p.Close()
	}
	if len(proxies) != 2 || !strings.Contains(logs.String(), `msg="registered proxy left out: it does not serve the database" proxy=127.0.0.1:6432 database=db`) {
		t.Fatalf("%d proxies (%s); log:\n%s", len(proxies), ops.Describe(proxies), logs)
	}
	_, err = ops.Consoles(context.Background(), cfg, true, "", nil)
	want := "127.0.0.1:6432 (consul pauseproxy-elsewhere on node elsewhere, check passing) registered a loopback address, which cannot reach it from node "
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("every database: err %v, want %q", err, want)
	}
}
