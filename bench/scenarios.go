package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgbenchlog"
)

// Target names. Extra pauseproxy instances for the GOMAXPROCS curve are
// named gomaxprocsTarget(n).
const (
	targetDirect     = "direct"
	targetPgBouncer  = "pgbouncer"
	targetPauseproxy = "pauseproxy"
)

func gomaxprocsTarget(n int) string { return fmt.Sprintf("pauseproxy-gomaxprocs%d", n) }

// Scenario ids, used by --scenarios, in results.json and by the goals.
const (
	scSelectSimple   = "select-simple"
	scTPCB           = "tpcb"
	scSelectExtended = "select-extended"
	scSelectPrepared = "select-prepared"
	scConnect        = "connect"
	scLatency        = "latency-1client"
	scGOMAXPROCS     = "gomaxprocs"
	scIdle           = "idle-clients"
	scSwitchover     = "switchover"
)

// allScenarioIDs in the order of the report.
var allScenarioIDs = []string{scSelectSimple, scTPCB, scSelectExtended, scSelectPrepared, scConnect, scLatency, scGOMAXPROCS, scIdle, scSwitchover}

// Scenario is a pgbench workload run against several targets each round.
type Scenario struct {
	ID    string   `json:"id"`
	Title string   `json:"title"`
	Args  []string `json:"pgbench_args"`
	// Targets in their order for round 1; later rounds rotate it.
	Targets []string `json:"targets"`
	// Baseline is the target the others are divided by in the report's
	// main ratio column ("direct", or GOMAXPROCS=1 for the curve).
	Baseline string `json:"baseline"`
	// Latency collects pgbench's per-transaction log for percentiles.
	Latency bool `json:"latency,omitempty"`
	// Writes: the scenario writes pgbench_history, which is truncated
	// before each run (what pgbench does itself without -n) so that every
	// run starts from the same table sizes.
	Writes bool `json:"writes,omitempty"`
}

// pgbenchScenarios are the plain pgbench scenarios. gomaxprocs lists the
// GOMAXPROCS values of extra pauseproxy instances (below the CPU count);
// the main pauseproxy runs with Go's default, the CPU count.
func pgbenchScenarios(gomaxprocs []int) []Scenario {
	three := []string{targetDirect, targetPgBouncer, targetPauseproxy}
	curve := []string{}
	for _, n := range gomaxprocs {
		curve = append(curve, gomaxprocsTarget(n))
	}
	curve = append(curve, targetPauseproxy)
	return []Scenario{
		{ID: scSelectSimple, Title: "Select-only, simple protocol, 50 clients",
			Args: []string{"-S", "-M", "simple", "-c", "50", "-j", "2"}, Targets: three, Baseline: targetDirect},
		{ID: scTPCB, Title: "TPC-B (pgbench default), 16 clients",
			Args: []string{"-M", "simple", "-c", "16", "-j", "2"}, Targets: three, Baseline: targetDirect, Writes: true},
		{ID: scSelectExtended, Title: "Select-only, extended protocol (unnamed statements), 50 clients",
			Args: []string{"-S", "-M", "extended", "-c", "50", "-j", "2"}, Targets: three, Baseline: targetDirect},
		{ID: scSelectPrepared, Title: "Select-only, named prepared statements, 50 clients",
			Args: []string{"-S", "-M", "prepared", "-c", "50", "-j", "2"}, Targets: three, Baseline: targetDirect},
		{ID: scConnect, Title: "Select-only, new connection per transaction (-C), 16 clients",
			Args: []string{"-S", "-M", "simple", "-C", "-c", "16", "-j", "2"}, Targets: three, Baseline: targetDirect},
		{ID: scLatency, Title: "Select-only, 1 client: latency per transaction",
			Args: []string{"-S", "-M", "simple", "-c", "1", "-j", "1"}, Targets: three, Baseline: targetDirect, Latency: true},
		{ID: scGOMAXPROCS, Title: "Select-only, simple protocol, 50 clients: pauseproxy by GOMAXPROCS",
			Args: []string{"-S", "-M", "simple", "-c", "50", "-j", "2"}, Targets: curve, Baseline: curve[0]},
	}
}

// Run is one pgbench run of a scenario against a target.
type Run struct {
	Scenario string    `json:"scenario"`
	Target   string    `json:"target"`
	Round    int       `json:"round"`
	Started  time.Time `json:"started"`
	PgbenchResult
	// OK: pgbench exited 0 with no aborted client and processed
	// transactions.
	OK bool `json:"ok"`
	// P50us and P99us: latency percentiles from the per-transaction log
	// (latency scenarios only).
	P50us float64 `json:"p50_us,omitempty"`
	P99us float64 `json:"p99_us,omitempty"`
	// CPUSeconds is the user+system CPU the pooler process used during the
	// run (0 for direct).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// runner holds what the round loop needs.
type runner struct {
	log      *slog.Logger
	targets  map[string]*Target
	pgPort   int // PostgreSQL, for resetting tables
	duration time.Duration
	tmp      string // for pgbench logs
}

// rotate returns s rotated left by k, so that each round starts with
// another target and no target always runs first (on a warmer or colder
// machine).
func rotate(s []string, k int) []string {
	if len(s) == 0 {
		return nil
	}
	k %= len(s)
	return append(slices.Clone(s[k:]), s[:k]...)
}

// runRounds runs every scenario against each of its targets, round after
// round, and returns every run. A failed run is recorded and the loop goes
// on: failures are results.
func (r *runner) runRounds(ctx context.Context, scs []Scenario, rounds int) []Run {
	var runs []Run
	total := 0
	for _, sc := range scs {
		total += len(sc.Targets) * rounds
	}
	n := 0
	for round := 1; round <= rounds; round++ {
		for _, sc := range scs {
			for _, name := range rotate(sc.Targets, round-1) {
				if ctx.Err() != nil {
					return runs
				}
				n++
				run := r.runOne(ctx, sc, name, round)
				runs = append(runs, run)
				r.log.Info(fmt.Sprintf("[%d/%d] round %d %s %s", n, total, round, sc.ID, name), runAttrs(run)...)
			}
		}
	}
	return runs
}

func runAttrs(run Run) []any {
	attrs := []any{slog.Float64("tps", round1(run.TPS))}
	if run.P50us > 0 {
		attrs = append(attrs, slog.Float64("p50_us", round1(run.P50us)), slog.Float64("p99_us", round1(run.P99us)))
	}
	if run.CPUSeconds > 0 {
		attrs = append(attrs, slog.Float64("cpu_s", round1(run.CPUSeconds)))
	}
	if !run.OK {
		attrs = append(attrs, slog.String("error", run.Error))
	}
	return attrs
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// runOne runs one scenario against one target.
func (r *runner) runOne(ctx context.Context, sc Scenario, name string, round int) Run {
	run := Run{Scenario: sc.ID, Target: name, Round: round, Started: time.Now()}
	t := r.targets[name]
	if t == nil {
		run.Error = "target " + name + " did not start"
		return run
	}
	if sc.Writes {
		if err := r.resetHistory(ctx); err != nil {
			run.Error = err.Error()
			return run
		}
	}
	var logPrefix string
	if sc.Latency {
		logPrefix = filepath.Join(r.tmp, fmt.Sprintf("txlog-%s-%s-%d", sc.ID, name, round))
	}
	var cpu0 time.Duration
	if t.Proc != nil {
		cpu0, _ = cpuTime(t.Proc.PID())
	}
	res, out, err := runPgbench(ctx, pgbenchRun{Args: sc.Args, Duration: r.duration, Port: t.Port, LogPath: logPrefix})
	if t.Proc != nil {
		if cpu1, err := cpuTime(t.Proc.PID()); err == nil {
			run.CPUSeconds = (cpu1 - cpu0).Seconds()
		}
	}
	run.PgbenchResult = res
	run.OK = err == nil && res.ExitCode == 0 && res.AbortedClients == 0 && !res.Incomplete && res.Processed > 0
	switch {
	case err != nil:
		run.Error = err.Error()
	case !run.OK:
		run.Error = strings.Join(res.Errors, "; ")
		if run.Error == "" {
			run.Error = "pgbench reported no transactions:\n" + tailLines(out, 10)
		}
	}
	if sc.Latency && run.OK {
		l, err := pgbenchlog.Read(logPrefix)
		if err != nil {
			run.OK, run.Error = false, "read per-transaction log: "+err.Error()
		} else {
			run.P50us = percentile(l.Latencies, 50)
			run.P99us = percentile(l.Latencies, 99)
		}
	}
	if logPrefix != "" {
		files, _ := filepath.Glob(logPrefix + ".*")
		for _, f := range files {
			os.Remove(f)
		}
	}
	if t.Proc != nil && t.Proc.exited() {
		run.OK = false
		run.Error = strings.TrimPrefix(run.Error+"; ", "; ") + name + " exited during the run:\n" + t.Proc.logTail()
	}
	// Let connections in TIME_WAIT and the poolers' closing work settle
	// before the next run.
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	return run
}

// resetHistory empties pgbench_history and vacuums the small tables TPC-B
// updates, directly on the server, as pgbench does before a run without -n.
func (r *runner) resetHistory(ctx context.Context) error {
	c, err := pgconn.Connect(ctx, benchDSN(r.pgPort))
	if err != nil {
		return fmt.Errorf("reset pgbench_history: %w", err)
	}
	defer c.Close(context.Background())
	for _, sql := range []string{"TRUNCATE pgbench_history", "VACUUM pgbench_branches", "VACUUM pgbench_tellers"} {
		if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("reset: %s: %w", sql, err)
		}
	}
	return nil
}
