package patronitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// etcdBin is the Debian etcd-server binary.
const etcdBin = "/usr/bin/etcd"

// startEtcd starts a one-member etcd on two free loopback ports and waits
// until it reports healthy.
func (c *Cluster) startEtcd(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	dir := filepath.Join(c.Dir, "etcd")
	p, err := startProcess("etcd", filepath.Join(c.Dir, "etcd.log"), os.Environ(),
		etcdBin,
		"--name", "etcd0",
		"--data-dir", dir,
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "etcd0="+peer,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-level", "warn",
	)
	if err != nil {
		return err
	}
	c.dcs = p
	c.EtcdURL = client
	err = waitHTTP(ctx, p, client+"/health", func(body []byte) bool {
		return bytes.Contains(body, []byte(`"health":"true"`))
	})
	if err != nil {
		return fmt.Errorf("etcd at %s did not become healthy: %w\n--- etcd log tail ---\n%s", client, err, p.tail(30))
	}
	return nil
}

// startConsul starts the cluster's Consul dev agent.
func (c *Cluster) startConsul(ctx context.Context, bin string) error {
	a, err := startConsulAgent(ctx, bin, c.Dir, c.Scope)
	if a != nil {
		c.dcs = a.proc
	}
	if err != nil {
		return err
	}
	c.ConsulAddr = a.Addr
	return nil
}

// ConsulAgent is a Consul dev agent (an in-memory server) on free loopback
// ports, for tests that need Consul without Patroni (StartConsul). A
// Cluster on StoreConsul runs one of its own.
type ConsulAgent struct {
	Addr string // HTTP API, host:port
	Node string // the agent's node name
	bin  string
	dir  string
	hcl  string // its ports
	proc *process
	// owned is set when the agent owns dir (StartConsul), which Stop
	// removes.
	owned    bool
	stopOnce sync.Once
}

// StartConsul starts a Consul dev agent (binary: see ConsulBinary) and
// returns once it has elected itself leader. Stop it with Stop.
func StartConsul(ctx context.Context) (*ConsulAgent, error) {
	bin, err := ConsulBinary(ctx, "")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "patronitest-consul-")
	if err != nil {
		return nil, fmt.Errorf("patronitest: %w", err)
	}
	a, err := startConsulAgent(ctx, bin, dir, "consul-"+randHex(4))
	if a != nil {
		a.owned = true
	}
	if err != nil {
		if a != nil {
			a.Stop()
		} else {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return a, nil
}

// startConsulAgent starts a dev agent called node with its log in dir. On
// error the agent, if it started, is returned for the caller to stop.
func startConsulAgent(ctx context.Context, bin, dir, node string) (*ConsulAgent, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	httpPort, dns, grpc, serfLAN, serfWAN, server := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	// Consul 1.14 dev mode turns on https, grpc and grpc_tls on fixed
	// ports; -1 disables a listener.
	a := &ConsulAgent{
		Addr: fmt.Sprintf("127.0.0.1:%d", httpPort),
		Node: node,
		bin:  bin,
		dir:  dir,
		hcl: fmt.Sprintf("ports { http = %d, https = -1, dns = %d, grpc = %d, grpc_tls = -1, serf_lan = %d, serf_wan = %d, server = %d }",
			httpPort, dns, grpc, serfLAN, serfWAN, server),
	}
	if err := a.start(ctx); err != nil {
		if a.proc == nil {
			return nil, err
		}
		return a, err
	}
	return a, nil
}

// start starts the agent process and waits for its leader.
func (a *ConsulAgent) start(ctx context.Context) error {
	p, err := startProcess("consul", filepath.Join(a.dir, "consul.log"), os.Environ(),
		a.bin, "agent", "-dev",
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-node", a.Node,
		"-log-level", "warn",
		"-hcl", a.hcl,
	)
	if err != nil {
		return err
	}
	a.proc = p
	err = waitHTTP(ctx, p, "http://"+a.Addr+"/v1/status/leader", func(body []byte) bool {
		return len(bytes.Trim(bytes.TrimSpace(body), `"`)) > 0
	})
	if err != nil {
		return fmt.Errorf("consul agent at %s did not elect a leader: %w\n--- consul log tail ---\n%s", a.Addr, err, p.tail(30))
	}
	return nil
}

// Down stops the agent process, keeping its ports for Up. A dev agent
// keeps nothing: every registration is gone after Down and Up, as after
// the restart of an agent that lost its data directory.
func (a *ConsulAgent) Down() {
	a.proc.stop(syscall.SIGTERM, 5*time.Second)
}

// Up starts the agent again after Down, on the same ports.
func (a *ConsulAgent) Up(ctx context.Context) error {
	return a.start(ctx)
}

// Stop stops the agent, and removes its directory when StartConsul made
// it. Safe to call twice.
func (a *ConsulAgent) Stop() error {
	var err error
	a.stopOnce.Do(func() {
		if a.proc != nil {
			a.proc.stop(syscall.SIGTERM, 5*time.Second)
		}
		if a.owned {
			err = os.RemoveAll(a.dir)
		}
	})
	return err
}

// waitHTTP polls url until ready accepts a 200 body, the process exits, or
// ctx is done.
func waitHTTP(ctx context.Context, p *process, url string, ready func([]byte) bool) error {
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("%s exited: %v", p.name, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := httpClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ready(body) {
				return nil
			}
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// ConsulBinary finds a Consul agent binary: explicit (Options.ConsulBin),
// then $PAUSEPROXY_CONSUL, then the cache paths where
// scripts/consul-agent.sh builds it, then that script itself (which builds
// Consul and prints its path).
func ConsulBinary(ctx context.Context, explicit string) (string, error) {
	var tried []string
	for _, cand := range []string{explicit, os.Getenv("PAUSEPROXY_CONSUL")} {
		if cand == "" {
			continue
		}
		if isExecutable(cand) {
			return cand, nil
		}
		tried = append(tried, cand)
	}
	var cached []string
	if home, err := os.UserHomeDir(); err == nil {
		cached = append(cached, filepath.Join(home, ".cache/pauseproxy/consul-1.14.11"), filepath.Join(home, ".cache/pauseproxy/consul"))
	}
	cached = append(cached, "/root/.cache/pauseproxy/consul-1.14.11", "/root/.cache/pauseproxy/consul")
	for _, cand := range cached {
		if isExecutable(cand) {
			return cand, nil
		}
		tried = append(tried, cand)
	}
	if script := findRepoFile("scripts/consul-agent.sh"); script != "" {
		out, err := exec.CommandContext(ctx, "bash", script).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				stderr = ee.Stderr
			}
			return "", fmt.Errorf("build consul with %s: %w\n%s", script, err, stderr)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if path := strings.TrimSpace(lines[len(lines)-1]); isExecutable(path) {
			return path, nil
		}
		return "", fmt.Errorf("%s did not print the path of an executable consul binary; it printed:\n%s", script, out)
	}
	return "", fmt.Errorf("no consul agent binary: set PAUSEPROXY_CONSUL to its path, or build it with scripts/consul-agent.sh (tried %s)", strings.Join(tried, ", "))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// findRepoFile looks for rel in the directory holding go.mod, walking up
// from the working directory (a test's working directory is its package).
func findRepoFile(rel string) string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
