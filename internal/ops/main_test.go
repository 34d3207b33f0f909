package ops_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/ops"
	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/pgbenchlog"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/registry"
)

// The package's fixtures, started once by TestMain (a Patroni cluster
// takes about 10s to start): a 2-node Patroni cluster whose store is
// Consul, its REST API guarded by restapi.authentication, and two
// pauseproxy binaries in front of it, each the other's peer. Proxy A
// follows the cluster through Patroni's REST API (so its commands take the
// lock file), with the API credentials in its patroni_urls' userinfo;
// proxy B through Consul (so its commands take the Consul lock and read
// the members' api_url from Consul's KV), with patroni_username and
// patroni_password. Both register themselves in the cluster's Consul
// agent (consul_register); A also lists B in its peers, B finds A only in
// Consul.
var (
	cluster *patronitest.Cluster
	bin     string // the pauseproxy binary, built with -race
	testDir string // the proxies' configs and userlist
	proxyA  *proxyProc
	proxyB  *proxyProc
)

const (
	adminUser = "admin"
	adminPass = "adminpass"
	appUser   = "app"
	appPass   = "apppass"
	// Patroni's restapi.authentication.
	apiUser = "patroni-api"
	apiPass = "api-pass"
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ops tests:", err)
		os.Exit(1)
	}
	// Everything the tests ran in this process (the pipelines) is gone.
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "pauseproxy-ops-test")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	testDir = dir
	// Lock files of this test binary only: other packages' tests (run at
	// the same time by go test) take locks of the same names.
	os.Setenv(ops.LockDirEnv, dir)
	bin = filepath.Join(dir, "pauseproxy")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, "github.com/pauseproxy/pauseproxy/cmd/pauseproxy").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build pauseproxy: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cluster, err = patronitest.Start(ctx, patronitest.Options{Store: patronitest.StoreConsul, APIUsername: apiUser, APIPassword: apiPass})
	if err != nil {
		return 0, fmt.Errorf("start Patroni cluster: %w", err)
	}
	defer cluster.Stop()

	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = pgtest.FreePort(); err != nil {
			return 0, err
		}
	}
	proxyA = &proxyProc{name: "A", port: ports[0], peer: ports[1], source: "patroni"}
	proxyB = &proxyProc{name: "B", port: ports[1], source: "consul"}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if err := p.start(dir); err != nil {
			return 0, err
		}
		defer p.stop()
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if err := p.waitVerified(ctx); err != nil {
			return 0, err
		}
		if err := p.waitRegistered(ctx); err != nil {
			return 0, err
		}
	}
	code := m.Run()
	if code != 0 {
		for _, p := range []*proxyProc{proxyA, proxyB} {
			fmt.Fprintf(os.Stderr, "--- proxy %s log (tail):\n%s\n", p.name, p.logs.Tail(80))
		}
	}
	return code, nil
}

// proxyProc is one pauseproxy process.
type proxyProc struct {
	name   string
	port   int
	peer   int    // the port of its peer (peers), 0 for none
	source string // "patroni" or "consul"
	path   string // its config
	cmd    *exec.Cmd
	logs   *proxytest.SyncBuffer
}

func (p *proxyProc) start(dir string) error {
	c := cluster
	userlist := filepath.Join(dir, "userlist.txt")
	body := fmt.Sprintf("%q %q\n%q %q\n", appUser, appPass, adminUser, adminPass)
	if err := os.WriteFile(userlist, []byte(body), 0o600); err != nil {
		return err
	}
	var disc string
	if p.source == "consul" {
		disc = fmt.Sprintf("discovery = \"consul\"\nconsul_addr = %q\nconsul_service = %q\npatroni_username = %q\npatroni_password = %q\n",
			c.ConsulAddr, c.Scope, apiUser, apiPass)
	} else {
		urls := make([]string, len(c.PatroniURLs()))
		for i, u := range c.PatroniURLs() {
			urls[i] = strconv.Quote(strings.Replace(u, "://", "://"+apiUser+":"+apiPass+"@", 1))
		}
		disc = fmt.Sprintf("discovery = \"patroni\"\npatroni_urls = [%s]\n", strings.Join(urls, ", "))
	}
	peers := ""
	if p.peer != 0 {
		peers = fmt.Sprintf("peers = [\"127.0.0.1:%d\"]\n", p.peer)
	}
	p.path = filepath.Join(dir, "proxy-"+p.name+".toml")
	cfg := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "md5"
auth_file = "userlist.txt"
admin_users = [%q]
default_pool_size = 8
max_client_conn = 200
hold_timeout = "30s"
drain_timeout = "10s"
%sconsul_register = true
consul_register_addr = %q

[databases.db]
%sdbname = "postgres"
user = %q
password = %q
`, p.port, adminUser, peers, c.ConsulAddr, disc, c.SuperUser, c.SuperPassword)
	if err := os.WriteFile(p.path, []byte(cfg), 0o600); err != nil {
		return err
	}
	p.logs = &proxytest.SyncBuffer{}
	// The tests run as root, which the proxy refuses without the flag.
	p.cmd = exec.Command(bin, "--allow-root", "--config", p.path)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return p.cmd.Start()
}

func (p *proxyProc) stop() {
	p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// console is the proxy's admin console as ops sees it.
func (p *proxyProc) console(t testing.TB) *ops.Console {
	t.Helper()
	c, err := ops.NewConsole("127.0.0.1", p.port, ops.ConsoleLogin{User: adminUser, Password: adminPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitVerified waits until the proxy answers and has a verified primary.
func (p *proxyProc) waitVerified(ctx context.Context) error {
	c, err := ops.NewConsole("127.0.0.1", p.port, ops.ConsoleLogin{User: adminUser, Password: adminPass})
	if err != nil {
		return err
	}
	defer c.Close()
	var last error
	for {
		st, err := c.State(ctx, "db")
		if err == nil && st.Verified != "" {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("no verified primary (discovery names %q)", st.Primary)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy %s not ready: %v\n%s", p.name, last, p.logs.Tail(40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitRegistered waits until the proxy's Consul registration is there.
func (p *proxyProc) waitRegistered(ctx context.Context) error {
	cfg, err := config.Load(p.path)
	if err != nil {
		return err
	}
	id := registry.ServiceID(&cfg.Proxy)
	for {
		// Lookup leaves out the asking instance: ask as another one.
		other := *cfg
		other.Proxy.ConsulRegisterAdvertise = "127.0.0.1:1"
		found, _, err := registry.Lookup(ctx, &other)
		if err == nil && slices.ContainsFunc(found, func(in registry.Instance) bool { return in.ID == id }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("proxy %s not registered in Consul: %v (found %+v)\n%s", p.name, err, found, p.logs.Tail(40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// state returns the proxy's state of db.
func (p *proxyProc) state(t testing.TB) ops.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.console(t).State(ctx, "db")
	if err != nil {
		t.Fatalf("proxy %s: %v", p.name, err)
	}
	return st
}

// dsn is a client DSN through the proxy.
func (p *proxyProc) dsn() string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/db?sslmode=disable", appUser, appPass, p.port)
}

// loadConfig loads the proxy's config, as the command line does.
func (p *proxyProc) loadConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Load(p.path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitHealthy waits until Patroni's cluster has a running leader and every
// replica runs with a known lag under 1 MiB (a switchover can follow), and
// both proxies have verified the leader.
func waitHealthy(t testing.TB) *patronitest.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var why string
	for {
		leader, w := healthy(ctx)
		if leader != nil {
			a, b := proxyA.state(t), proxyB.state(t)
			if a.Verified == leader.PGAddr() && b.Verified == leader.PGAddr() {
				return leader
			}
			w = fmt.Sprintf("proxies verified %q and %q, leader %s at %s", a.Verified, b.Verified, leader.Name, leader.PGAddr())
		}
		why = w
		select {
		case <-ctx.Done():
			t.Fatalf("cluster not healthy: %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func healthy(ctx context.Context) (*patronitest.Node, string) {
	st, err := cluster.Status(ctx)
	if err != nil {
		return nil, err.Error()
	}
	var leader *patronitest.Node
	for _, m := range st.Members {
		switch {
		case m.Role == "leader":
			if m.State != "running" {
				return nil, "leader " + m.State
			}
			leader = cluster.Node(m.Name)
		case m.State != "running" && m.State != "streaming":
			return nil, m.Name + " " + m.State
		default:
			lag, err := strconv.ParseInt(string(m.Lag), 10, 64)
			if err != nil || lag > 1<<20 {
				return nil, fmt.Sprintf("%s lag %s", m.Name, m.Lag)
			}
		}
	}
	if leader == nil || len(st.Members) != len(cluster.Members) {
		return nil, "no leader, or a member missing"
	}
	return leader, ""
}

// runBinary runs the pauseproxy binary with args and returns its exit
// code, stdout and stderr.
func runBinary(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+cluster.Dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// pgbench is one pgbench run through a proxy.
type pgbench struct {
	out    string
	logDir string
}

// runPgbench runs pgbench against p with args (and a transaction log) and
// returns its output; it fails the test only if pgbench cannot start.
func runPgbench(t testing.TB, p *proxyProc, args ...string) pgbench {
	t.Helper()
	dir := t.TempDir()
	if !slices.Contains(args, "-i") {
		args = append(args, "-l", "--log-prefix="+filepath.Join(dir, "tx"))
	}
	args = append(args, fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=db sslmode=disable", p.port, appUser))
	cmd := exec.Command("pgbench", args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+appPass)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("pgbench: %v", err)
	}
	return pgbench{out: string(out), logDir: dir}
}

// check fails the test unless pgbench reported 0 failed transactions and
// no aborted client, and returns the transactions processed.
func (b pgbench) check(t testing.TB) int64 {
	t.Helper()
	f, p := proxytest.PgbenchFailed.FindStringSubmatch(b.out), proxytest.PgbenchProcessed.FindStringSubmatch(b.out)
	if f == nil || p == nil || f[1] != "0" || strings.Contains(b.out, "aborted") {
		t.Fatalf("want 0 failed transactions and no aborted client:\n%s", b.out)
	}
	n, _ := strconv.ParseInt(p[1], 10, 64)
	return n
}

// maxLatency is the longest transaction in pgbench's per-transaction logs:
// the longest stall a client saw.
func (b pgbench) maxLatency(t testing.TB) time.Duration {
	t.Helper()
	l, err := pgbenchlog.Read(filepath.Join(b.logDir, "tx"))
	if err != nil {
		t.Fatal(err)
	}
	return l.MaxLatency()
}

// countHistory counts pgbench_history rows on node, directly.
func countHistory(t testing.TB, node *patronitest.Node) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.DSN(node, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// query runs one statement through p and fails the test on error or when
// it takes longer than within.
func query(t testing.TB, p *proxyProc, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn())
	if err != nil {
		t.Fatalf("through proxy %s: %v", p.name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("through proxy %s: %v", p.name, err)
	}
}
