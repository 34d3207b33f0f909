// Command demo shows pauseproxy's reason to exist in about a minute: it
// boots a local 2-node Patroni cluster (etcd as its store), starts
// pauseproxy in front of it with discovery = "patroni", runs pgbench TPC-B
// through the proxy, switches the primary over in the middle of the run,
// and prints the transactions, the failed ones and the longest stall.
//
// Run it through scripts/demo.sh, which installs the Debian packages it
// needs first (patroni, etcd-server, postgresql-15, pgbench).
//
// It must not be imported; it is a program.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/pgbenchlog"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

func main() {
	os.Exit(run())
}

func run() int {
	duration := flag.Duration("duration", 30*time.Second, "pgbench run time; the switchover happens after a third of it")
	clients := flag.Int("clients", 16, "pgbench clients")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "pauseproxy-demo")
	if err != nil {
		return fail("temp dir", err)
	}
	defer os.RemoveAll(dir)

	step("building pauseproxy")
	bin := filepath.Join(dir, "pauseproxy")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pauseproxy").CombinedOutput(); err != nil {
		return fail("go build ./cmd/pauseproxy", fmt.Errorf("%v\n%s", err, out))
	}

	step("starting a 2-node Patroni cluster (etcd, loop_wait 1)")
	start := time.Now()
	c, err := patronitest.Start(ctx, patronitest.Options{})
	if err != nil {
		return fail("start Patroni", err)
	}
	defer c.Stop()
	leader, err := c.Leader(ctx)
	if err != nil {
		return fail("find the leader", err)
	}
	fmt.Printf("   leader %s (port %d), ready in %s\n", leader.Name, leader.PGPort, time.Since(start).Round(time.Second))

	step("starting pauseproxy with discovery = \"patroni\"")
	port, err := pgtest.FreePort()
	if err != nil {
		return fail("free port", err)
	}
	cfgPath := filepath.Join(dir, "pauseproxy.toml")
	urls := make([]string, 0, len(c.Members))
	for _, u := range c.PatroniURLs() {
		urls = append(urls, strconv.Quote(u))
	}
	os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(fmt.Sprintf("%q %q\n%q %q\n", c.SuperUser, c.SuperPassword, "admin", "admin")), 0o600)
	cfg := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "md5"
auth_file = "userlist.txt"
admin_users = ["admin"]
pool_mode = "transaction"
default_pool_size = 8
hold_timeout = "30s"

[databases.app]
discovery = "patroni"
patroni_urls = [%s]
dbname = "postgres"
`, port, strings.Join(urls, ", "))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fail("write config", err)
	}
	// The demo runs as root (sudo), which the proxy refuses without the
	// flag; a production proxy runs as an unprivileged user.
	proxy := exec.CommandContext(ctx, bin, "--allow-root", "--config", cfgPath)
	proxyLog, _ := os.Create(filepath.Join(dir, "pauseproxy.log"))
	proxy.Stdout, proxy.Stderr = proxyLog, proxyLog
	proxy.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := proxy.Start(); err != nil {
		return fail("start pauseproxy", err)
	}
	defer func() { proxy.Process.Signal(syscall.SIGTERM); proxy.Wait() }()

	conn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=app sslmode=disable", port, c.SuperUser)
	env := append(os.Environ(), "PGPASSWORD="+c.SuperPassword)
	if err := waitReady(ctx, conn, env); err != nil {
		return fail("pauseproxy did not accept clients", err)
	}
	step("pgbench -i through pauseproxy")
	if out, err := pgbench(ctx, env, "-i", "-q", "-s", "4", conn); err != nil {
		return fail("pgbench -i", fmt.Errorf("%v\n%s", err, out))
	}

	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) == 0 {
		return fail("find a replica", err)
	}
	candidate := replicas[0]
	step(fmt.Sprintf("pgbench TPC-B, %d clients, %s; switchover %s -> %s after %s",
		*clients, *duration, leader.Name, candidate.Name, (*duration / 3).Round(time.Second)))
	logPrefix := filepath.Join(dir, "tx")
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := pgbench(ctx, env, "-c", strconv.Itoa(*clients), "-j", "2", "-T", strconv.Itoa(int(duration.Seconds())),
			"-n", "-l", "--log-prefix", logPrefix, conn)
		done <- result{out, err}
	}()
	select {
	case <-time.After(*duration / 3):
	case <-ctx.Done():
		return 1
	}
	t0 := time.Now()
	how, swErr := switchover(ctx, bin, cfgPath, c, candidate.Name)
	fmt.Printf("   %s: %s (%s)\n", how, okOr(swErr), time.Since(t0).Round(10*time.Millisecond))
	r := <-done

	stall := time.Duration(-1)
	if l, err := pgbenchlog.Read(logPrefix); err == nil {
		stall, _ = pgbenchlog.LongestGap(l.Done)
	}
	fmt.Println()
	fmt.Println("== result ==")
	fmt.Printf("transactions processed : %s\n", match(r.out, `number of transactions actually processed: (\d+)`))
	fmt.Printf("failed transactions    : %s\n", match(r.out, `number of failed transactions: (\d+)`))
	aborted := strings.Count(r.out, "aborted in command")
	fmt.Printf("aborted clients        : %d\n", aborted)
	fmt.Printf("longest stall          : %s (no transaction completed)\n", stall.Round(time.Millisecond))
	fmt.Printf("tps                    : %s\n", match(r.out, `tps = ([\d.]+)`))
	if nl, err := c.Leader(ctx); err == nil {
		fmt.Printf("primary now            : %s (port %d)\n", nl.Name, nl.PGPort)
	}
	if r.err != nil || aborted > 0 || match(r.out, `number of failed transactions: (\d+)`) != "0" {
		fmt.Printf("\npgbench output:\n%s\n", r.out)
		return 1
	}
	fmt.Println("\nThe primary moved under load and no client saw an error.")
	return 0
}

// switchover runs `pauseproxy switchover` when this build has it, and
// otherwise asks Patroni directly (pauseproxy then follows on its own).
func switchover(ctx context.Context, bin, cfgPath string, c *patronitest.Cluster, candidate string) (string, error) {
	if out, err := exec.Command(bin, "help").CombinedOutput(); err == nil && strings.Contains(string(out), "switchover") {
		cmd := exec.CommandContext(ctx, bin, "switchover", "--config", cfgPath, "--database", "app", "--candidate", candidate)
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v\n%s", err, out)
		}
		return "pauseproxy switchover", err
	}
	return "Patroni switchover (pauseproxy follows through discovery)", c.Switchover(ctx, candidate)
}

func waitReady(ctx context.Context, conn string, env []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cmd := exec.CommandContext(ctx, "psql", conn, "-XAtc", "SELECT 1")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v: %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pgbench(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func match(s, re string) string {
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		return "?"
	}
	return m[1]
}

func okOr(err error) string {
	if err == nil {
		return "done"
	}
	return "FAILED: " + err.Error()
}

func step(s string) { fmt.Printf("-> %s\n", s) }

func fail(what string, err error) int {
	fmt.Fprintf(os.Stderr, "demo: %s: %v\n", what, err)
	return 1
}
