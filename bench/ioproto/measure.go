package main

import (
	"bufio"
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
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// The role and database pgbench uses on every target.
const (
	benchUser = "bench"
	benchDB   = "bench"
	scale     = 16
)

type measureOptions struct {
	Rounds int
	Pool   int
	Out    string
	Quick  bool
	// Pauseproxy is a pauseproxy binary to measure too; "" for none.
	Pauseproxy string
	// Targets are the prototype targets to run, by name; nil for all.
	Targets []string
}

// target is where pgbench points: PostgreSQL, PgBouncer or a prototype.
type target struct {
	name string
	port int
	cmd  *exec.Cmd // nil for direct: PostgreSQL's CPU is spread over its backends
}

// scenario is one pgbench invocation, by transaction count per client.
type scenario struct {
	name    string
	args    []string
	latency bool // also read the per-transaction log for the p50
}

func scenarios(quick bool) []scenario {
	t := func(n int) string {
		if quick {
			n /= 10
		}
		return strconv.Itoa(n)
	}
	return []scenario{
		{name: "simple-c50", args: []string{"-S", "-M", "simple", "-c", "50", "-j", "2", "-t", t(600)}},
		{name: "extended-c50", args: []string{"-S", "-M", "extended", "-c", "50", "-j", "2", "-t", t(600)}},
		{name: "latency-c1", args: []string{"-S", "-M", "simple", "-c", "1", "-j", "1", "-t", t(5000)}, latency: true},
		{name: "connect-c16", args: []string{"-S", "-C", "-c", "16", "-j", "2", "-t", t(100)}},
	}
}

// result is one pgbench run against one target.
type result struct {
	tps       float64
	txns      int64
	cpu       time.Duration // of the target process over the run
	switches  int64         // context switches of the target's threads
	p50       time.Duration // latency scenario only
	latencyAv time.Duration
}

func runMeasure(o measureOptions) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ioproto-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	logf("starting PostgreSQL 15")
	pg, err := pgtest.Start(pgtest.Options{Conf: map[string]string{"max_connections": "400"}})
	if err != nil {
		return err
	}
	defer pg.Stop()
	for _, sql := range []string{
		"CREATE ROLE " + benchUser + " LOGIN",
		"CREATE DATABASE " + benchDB + " OWNER " + benchUser,
	} {
		if err := pg.Exec(ctx, sql); err != nil {
			return err
		}
	}
	logf("pgbench -i -s %d", scale)
	if out, err := pgbenchCmd(ctx, pg.Port, "-i", "-q", "-s", strconv.Itoa(scale)).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	serverDSN := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", pg.Port, benchUser, benchDB)

	targets := []*target{{name: "direct", port: pg.Port}}
	defer func() {
		for _, t := range targets {
			stopTarget(t)
		}
	}()
	bouncer, err := startBouncer(ctx, dir, pg.Port, o.Pool)
	if err != nil {
		return err
	}
	targets = append(targets, bouncer)
	if o.Pauseproxy != "" {
		pp, err := startPauseproxy(ctx, o.Pauseproxy, dir, pg.Port, o.Pool)
		if err != nil {
			return err
		}
		targets = append(targets, pp)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, v := range []struct {
		name, kind string
		gomaxprocs int
		extra      []string
	}{
		{"pair", "pair", 0, nil},
		{"single", "single", 0, nil},
		{"epoll", "epoll", 0, nil},
		{"pair-P1", "pair", 1, nil},
		{"single-P1", "single", 1, nil},
		{"epoll-P1", "epoll", 1, nil},
		{"epoll-locked", "epoll", 0, []string{"-lock"}},
		{"epoll-raw", "epoll", 0, []string{"-raw"}},
		{"epoll-locked-raw", "epoll", 0, []string{"-lock", "-raw"}},
	} {
		if o.Targets != nil && !slices.Contains(o.Targets, v.name) {
			continue
		}
		t, err := startProto(ctx, self, dir, v.name, v.kind, v.gomaxprocs, serverDSN, o.Pool, v.extra)
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}

	scs := scenarios(o.Quick)
	// results[scenario][target][round]
	results := make(map[string]map[string][]result)
	for _, sc := range scs {
		results[sc.name] = make(map[string][]result)
	}
	load := []string{loadAvg()}
	for r := range o.Rounds {
		order := slices.Clone(targets)
		k := r % len(order)
		order = append(order[k:], order[:k]...)
		for _, t := range order {
			for _, sc := range scs {
				res, err := runScenario(ctx, dir, t, sc)
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", r+1, t.name, sc.name, err)
				}
				logf("round %d %-16s %-13s tps %8.0f  cpu/tx %6.1f µs  p50 %v", r+1, t.name, sc.name, res.tps, perTx(res.cpu, res.txns), res.p50)
				results[sc.name][t.name] = append(results[sc.name][t.name], res)
			}
		}
	}
	load = append(load, loadAvg())
	var sys map[string]syscallCount
	if _, err := exec.LookPath("perf"); err == nil {
		sys = countSyscalls(ctx, dir, targets, scs[0])
	}
	rep := report(targets, scs, results, sys, o, load)
	fmt.Print(rep)
	if o.Out != "" {
		return os.WriteFile(o.Out, []byte(rep), 0o644)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func pgbenchCmd(ctx context.Context, port int, args ...string) *exec.Cmd {
	args = append(args, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", benchUser, benchDB)
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	return cmd
}

// runScenario runs sc against t once and reads the target's CPU time
// around it.
func runScenario(ctx context.Context, dir string, t *target, sc scenario) (result, error) {
	args := append([]string{"-n"}, sc.args...)
	logPrefix := filepath.Join(dir, "lat-"+t.name)
	if sc.latency {
		args = append(args, "-l", "--log-prefix="+logPrefix)
	}
	cpu0, sw0 := targetCPU(t)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, err := pgbenchCmd(ctx, t.port, args...).CombinedOutput()
	cpu1, sw1 := targetCPU(t)
	if err != nil {
		return result{}, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, tailLines(string(out), 10))
	}
	res := result{cpu: cpu1 - cpu0, switches: sw1 - sw0}
	res.tps, res.txns, res.latencyAv, err = parseSummary(out)
	if err != nil {
		return res, err
	}
	if sc.latency {
		res.p50, err = logP50(logPrefix)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// parseSummary reads pgbench's summary (PostgreSQL 15 docs, "pgbench",
// "Typical Output"). A run with failed transactions or aborted clients is
// an error: the prototypes must forward everything.
func parseSummary(out []byte) (tps float64, txns int64, avg time.Duration, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "tps = "):
			tps, _ = strconv.ParseFloat(strings.Fields(line)[2], 64)
		case strings.HasPrefix(line, "number of transactions actually processed: "):
			v := strings.Fields(strings.TrimPrefix(line, "number of transactions actually processed: "))[0]
			v, _, _ = strings.Cut(v, "/")
			txns, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(line, "latency average = "):
			ms, _ := strconv.ParseFloat(strings.Fields(line)[3], 64)
			avg = time.Duration(ms * float64(time.Millisecond))
		case strings.HasPrefix(line, "number of failed transactions: "):
			if !strings.HasPrefix(line, "number of failed transactions: 0 ") {
				err = fmt.Errorf("pgbench: %s", line)
			}
		case strings.Contains(line, "aborted"):
			err = fmt.Errorf("pgbench: %s", line)
		}
	}
	if err == nil && (tps == 0 || txns == 0) {
		err = fmt.Errorf("pgbench printed no summary:\n%s", tailLines(string(out), 10))
	}
	return tps, txns, avg, err
}

// logP50 is the median of the per-transaction latencies pgbench -l wrote
// (third field, microseconds; PostgreSQL 15 docs, "Per-Transaction
// Logging"), over every file with the prefix, which it then removes.
func logP50(prefix string) (time.Duration, error) {
	files, _ := filepath.Glob(prefix + ".*")
	var us []int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		os.Remove(f)
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 3 {
				continue
			}
			v, err := strconv.ParseInt(fs[2], 10, 64)
			if err == nil {
				us = append(us, v)
			}
		}
	}
	if len(us) == 0 {
		return 0, fmt.Errorf("no latencies in %s.*", prefix)
	}
	slices.Sort(us)
	return time.Duration(us[len(us)/2]) * time.Microsecond, nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func perTx(d time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// startBouncer starts Debian's PgBouncer as the postgres OS user (it
// refuses root) with the settings bench/services.go gives it, but trust
// auth like the prototypes.
func startBouncer(ctx context.Context, dir string, pgPort, pool int) (*target, error) {
	home := filepath.Join(dir, "pgbouncer")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(home, "userlist.txt"), fmt.Appendf(nil, "%q %q\n", benchUser, ""), 0o600); err != nil {
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
%s = host=127.0.0.1 port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
log_connections = 0
log_disconnections = 0
logfile =
pidfile =
`, benchDB, pgPort, benchDB, port, filepath.Join(home, "userlist.txt"), pool)
	if err := os.WriteFile(filepath.Join(home, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, err
	}
	if err := pgtest.ChownPostgres(home); err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/sbin/pgbouncer", filepath.Join(home, "pgbouncer.ini"))
	cmd.Dir = home
	if err := pgtest.RunAsPostgres(cmd); err != nil {
		return nil, err
	}
	t := &target{name: "pgbouncer", port: port, cmd: cmd}
	return t, startAndWait(ctx, t, filepath.Join(dir, "pgbouncer.log"))
}

// startPauseproxy runs pauseproxy with the settings bench/services.go
// gives it, but trust auth like PgBouncer and the prototypes here.
func startPauseproxy(ctx context.Context, bin, dir string, pgPort, pool int) (*target, error) {
	home := filepath.Join(dir, "pauseproxy")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "trust"
pool_mode = "transaction"
default_pool_size = %d
max_client_conn = 200
log_connections = false
log_disconnections = false

[databases.%s]
host = "127.0.0.1"
port = %d
dbname = %q
`, port, pool, benchDB, pgPort, benchDB)
	path := filepath.Join(home, "pauseproxy.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--allow-root", "--config", path)
	cmd.Dir = home
	t := &target{name: "pauseproxy", port: port, cmd: cmd}
	return t, startAndWait(ctx, t, filepath.Join(dir, "pauseproxy.log"))
}

// startProto runs this program with -serve as a child, so that its CPU is
// its own.
func startProto(ctx context.Context, self, dir, name, kind string, gomaxprocs int, dsn string, pool int, extra []string) (*target, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-serve", kind, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-server", dsn, "-pool", strconv.Itoa(pool)}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Env = os.Environ()
	if gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", gomaxprocs))
	}
	t := &target{name: name, port: port, cmd: cmd}
	return t, startAndWait(ctx, t, filepath.Join(dir, name+".log"))
}

func startAndWait(ctx context.Context, t *target, logPath string) error {
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	t.cmd.Stdout, t.cmd.Stderr = logFile, logFile
	if t.cmd.SysProcAttr == nil {
		t.cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	t.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := t.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", t.name, err)
	}
	logFile.Close()
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=2", t.port, benchUser, benchDB)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1").ReadAll()
			c.Close(ctx)
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("%s does not answer on port %d: %v\n%s", t.name, t.port, err, tailLines(string(b), 10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stopTarget(t *target) {
	if t.cmd == nil || t.cmd.Process == nil {
		return
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { t.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.cmd.Process.Kill()
		<-done
	}
}
