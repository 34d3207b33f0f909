package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Options are the command-line flags. Zero values mean "the mode's
// default" (full or --quick).
type Options struct {
	Quick              bool
	Rounds             int
	Duration           time.Duration
	SwitchoverDuration time.Duration
	Scale              int
	PoolSize           int
	AuthType           string
	IdleClients        int
	Scenarios          []string
	Out                string
	Rev                string
	GoBench            bool
	Profile            bool
	BenchTime          string
	Keep               bool
	// Render re-renders results.md and the charts from a results.json
	// instead of running anything.
	Render string
}

// withDefaults fills what the flags left zero, by mode.
func (o Options) withDefaults() Options {
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	defDur := func(v *time.Duration, full, quick time.Duration) {
		if *v == 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	def(&o.Rounds, 5, 2)
	defDur(&o.Duration, 20*time.Second, 5*time.Second)
	defDur(&o.SwitchoverDuration, 45*time.Second, 20*time.Second)
	def(&o.IdleClients, 10000, 1000)
	def(&o.Scale, 16, 16)
	def(&o.PoolSize, 20, 20)
	if o.AuthType == "" {
		o.AuthType = "md5"
	}
	if o.BenchTime == "" && o.Quick {
		o.BenchTime = "200ms"
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = allScenarioIDs
	}
	return o
}

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.Quick, "quick", false, "a few minutes: 2 rounds of 5s, 1,000 idle clients, a 20s switchover run, short Go benchmarks")
	fs.IntVar(&o.Rounds, "rounds", 0, "rounds over every scenario and target (default 5; quick 2)")
	fs.DurationVar(&o.Duration, "duration", 0, "pgbench duration per run (default 20s; quick 5s)")
	fs.DurationVar(&o.SwitchoverDuration, "switchover-duration", 0, "pgbench duration around the switchover (default 45s; quick 20s)")
	fs.IntVar(&o.Scale, "scale", 0, "pgbench scale factor (default 16)")
	fs.IntVar(&o.PoolSize, "pool-size", 0, "default_pool_size of both poolers (default 20)")
	fs.StringVar(&o.AuthType, "auth", "", "auth_type of both poolers and the server's method: md5 or scram-sha-256 (default md5)")
	fs.IntVar(&o.IdleClients, "idle-clients", 0, "clients of the idle-clients scenario (default 10000; quick 1000)")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(allScenarioIDs, ","))
	fs.StringVar(&o.Out, "out", "", "results directory (default bench/results in the repository)")
	fs.StringVar(&o.Rev, "rev", "", "build pauseproxy from this git revision instead of the working tree")
	fs.BoolVar(&o.GoBench, "gobench", true, "run the Go benchmarks of ./internal/... and embed their allocations")
	fs.BoolVar(&o.Profile, "profile", true, "sample pauseproxy with perf, and count both poolers' system calls, during extra select-simple runs")
	fs.StringVar(&o.BenchTime, "benchtime", "", "go test -benchtime (default go's; quick 200ms)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (logs, configs) and print its path")
	fs.StringVar(&o.Render, "render", "", "only re-render the report and charts from this results.json")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *scenarios != "" {
		for _, s := range strings.Split(*scenarios, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allScenarioIDs, s) {
				return o, fmt.Errorf("--scenarios: unknown scenario %q (want some of %s)", s, strings.Join(allScenarioIDs, ","))
			}
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	switch o.AuthType {
	case "", "md5", "scram-sha-256":
	default:
		return o, fmt.Errorf("--auth: want md5 or scram-sha-256, not %q", o.AuthType)
	}
	return o.withDefaults(), nil
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := findRepoRoot()
	if err != nil {
		log.Error("bench", slog.Any("err", err))
		return 1
	}
	if opts.Out == "" {
		opts.Out = filepath.Join(root, "bench", "results")
	}
	if opts.Render != "" {
		if err := rerender(opts.Render, opts.Out); err != nil {
			log.Error("render", slog.Any("err", err))
			return 1
		}
		return 0
	}
	res, err := runBench(ctx, root, opts, args, log)
	if err != nil {
		log.Error("bench failed", slog.Any("err", err))
		return 1
	}
	if ctx.Err() != nil {
		log.Error("interrupted: results not written")
		return 1
	}
	if err := writeResults(opts.Out, res); err != nil {
		log.Error("write results", slog.Any("err", err))
		return 1
	}
	fmt.Fprintf(stdout, "\nGoals (%s mode, noisy shared machine: see the spreads in the report):\n", res.Mode)
	for _, g := range res.Goals {
		fmt.Fprintf(stdout, "  %-13s %s: %s (want %s)\n", g.Status, g.Text, g.Measured, g.Threshold)
	}
	fmt.Fprintf(stdout, "\nReport: %s\n", filepath.Join(opts.Out, "results.md"))
	return 0
}

// rerender rewrites the report from a results.json, re-evaluating the goals
// (so a change of the report code shows on old results).
func rerender(jsonPath, out string) error {
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", jsonPath, err)
	}
	r.Goals = evalGoals(&r)
	return writeResults(out, &r)
}

// runBench sets everything up, runs the selected scenarios and returns
// the results. Scenario failures are results; err is for a setup that
// cannot go on.
func runBench(ctx context.Context, root string, opts Options, args []string, log *slog.Logger) (*Results, error) {
	started := time.Now()
	selected := func(id string) bool { return slices.Contains(opts.Scenarios, id) }
	mode := "full"
	if opts.Quick {
		mode = "quick"
	}
	res := &Results{
		Mode:     mode,
		Command:  strings.TrimSpace("go run ./bench " + strings.Join(args, " ")),
		Started:  started,
		Machine:  readMachine(),
		Versions: readVersions(root),
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return nil, err
	}
	res.Machine.NoFile = nofile
	if need := uint64(opts.IdleClients) + 1000; selected(scIdle) && nofile < need {
		return nil, fmt.Errorf("the open-file limit is %d, the idle-clients scenario needs about %d: raise the hard limit (ulimit -Hn) or pass --idle-clients", nofile, need)
	}
	if _, err := os.Stat(pgbouncerBin); err != nil {
		return nil, fmt.Errorf("%s is missing: install Debian's pgbouncer (apt-get install pgbouncer)", pgbouncerBin)
	}

	tmp, err := os.MkdirTemp("", "pauseproxy-bench-")
	if err != nil {
		return nil, err
	}
	// PgBouncer runs as postgres and must reach its directory inside.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, err
	}
	if opts.Keep {
		log.Info("keeping the temporary directory", slog.String("dir", tmp))
	} else {
		defer os.RemoveAll(tmp)
	}

	res.Versions.Pauseproxy = gitRevision(root, opts.Rev)
	log.Info("building pauseproxy", slog.String("rev", res.Versions.Pauseproxy))
	bin, src, err := buildPauseproxy(ctx, root, opts.Rev, res.Versions.Pauseproxy, tmp)
	if err != nil {
		return nil, err
	}

	pool := PoolSettings{
		PoolMode:      "transaction",
		PoolSize:      opts.PoolSize,
		MaxClientConn: max(1000, opts.IdleClients+200),
		AuthType:      opts.AuthType,
		ClientTLSMode: "disable",
		ServerTLSMode: "disable",
	}
	res.Settings = Settings{
		Rounds:            opts.Rounds,
		DurationSeconds:   opts.Duration.Seconds(),
		Scale:             opts.Scale,
		IdleClients:       opts.IdleClients,
		SwitchoverSeconds: opts.SwitchoverDuration.Seconds(),
		Pool:              pool,
		Network:           "TCP over loopback (127.0.0.1) for every client and server connection",
	}

	var gomaxprocs []int
	for n := 1; n < res.Machine.NProc; n *= 2 {
		gomaxprocs = append(gomaxprocs, n)
	}
	var scs []Scenario
	for _, sc := range pgbenchScenarios(gomaxprocs) {
		if !selected(sc.ID) {
			continue
		}
		if sc.ID == scGOMAXPROCS && len(gomaxprocs) == 0 {
			continue
		}
		scs = append(scs, sc)
	}

	if len(scs) > 0 || selected(scIdle) {
		log.Info("starting PostgreSQL and filling pgbench tables", slog.Int("scale", opts.Scale))
		pg, err := startPostgres(ctx, opts.AuthType, opts.Scale)
		if err != nil {
			return nil, err
		}
		defer pg.Stop()
		res.Settings.PostgreSQL = serverSettings(ctx, pg.Port)
		server := serverAddr{pg.Host, pg.Port}

		if len(scs) > 0 {
			runs, prof, err := runScenarios(ctx, opts, scs, bin, tmp, pool, server, gomaxprocs, pg.Port, log)
			if err != nil {
				return nil, err
			}
			res.Runs = runs
			res.Scenarios = summarize(scs, runs)
			res.Profile = prof
		}
		if selected(scIdle) {
			res.Idle = runIdleScenario(ctx, opts, bin, tmp, pool, server, log)
		}
		pg.Stop()
	}

	if selected(scSwitchover) && ctx.Err() == nil {
		sb := &switchoverBench{log: log, bin: bin, tmp: tmp, settings: pool, scale: opts.Scale, duration: opts.SwitchoverDuration}
		res.Switchover = sb.run(ctx)
		res.Versions.Patroni = commandOutput("/usr/bin/patroni", "--version")
	}

	res.GoBench = GoBench{Status: "skipped", Command: goBenchCommand(opts.BenchTime)}
	if opts.GoBench && ctx.Err() == nil {
		log.Info("running the Go benchmarks of ./internal/...")
		// The benchmarks of the same source as the binary.
		res.GoBench = runGoBench(ctx, src, opts.BenchTime)
	}

	res.Targets = targetInfos(res, gomaxprocs)
	res.Goals = evalGoals(res)
	res.NotMeasured = notMeasured(res, opts)
	res.Machine.LoadAfter = loadAvg()
	res.Finished = time.Now()
	return res, nil
}

// runScenarios starts the poolers for the pgbench scenarios, runs the
// rounds, profiles pauseproxy during one more select-simple run, and stops
// the poolers.
func runScenarios(ctx context.Context, opts Options, scs []Scenario, bin, tmp string, pool PoolSettings, server serverAddr, gomaxprocs []int, pgPort int, log *slog.Logger) ([]Run, *Profile, error) {
	targets := map[string]*Target{targetDirect: {Name: targetDirect, Port: pgPort}}
	defer func() {
		for _, t := range targets {
			if t.Proc != nil {
				t.Proc.Stop()
			}
		}
	}()
	pgb, err := startPgBouncer(ctx, tmp, targetPgBouncer, pool, server)
	if err != nil {
		return nil, nil, err
	}
	targets[targetPgBouncer] = pgb
	pp, _, err := startPauseproxy(ctx, bin, tmp, targetPauseproxy, pool, staticDatabase(server), 0)
	if err != nil {
		return nil, nil, err
	}
	targets[targetPauseproxy] = pp
	for _, sc := range scs {
		if sc.ID != scGOMAXPROCS {
			continue
		}
		for _, n := range gomaxprocs {
			t, _, err := startPauseproxy(ctx, bin, tmp, gomaxprocsTarget(n), pool, staticDatabase(server), n)
			if err != nil {
				return nil, nil, err
			}
			targets[t.Name] = t
		}
	}
	r := &runner{log: log, targets: targets, pgPort: pgPort, duration: opts.Duration, tmp: tmp}
	log.Info("running scenarios", slog.Int("rounds", opts.Rounds), slog.Duration("per_run", opts.Duration))
	runs := r.runRounds(ctx, scs, opts.Rounds)
	if !opts.Profile || ctx.Err() != nil {
		return runs, nil, nil
	}
	for _, sc := range scs {
		if sc.ID == scSelectSimple {
			log.Info("profiling with perf", slog.String("scenario", sc.ID))
			p := profilePoolers(ctx, pgb, pp, sc, opts.Duration, tmp)
			log.Info("profile done", slog.String("status", p.Status), slog.String("error", p.Error))
			return runs, &p, nil
		}
	}
	return runs, nil, nil
}

// runIdleScenario measures fresh PgBouncer and pauseproxy instances, so
// that memory left over from the throughput runs does not blur the figure.
func runIdleScenario(ctx context.Context, opts Options, bin, tmp string, pool PoolSettings, server serverAddr, log *slog.Logger) []IdleResult {
	var out []IdleResult
	for _, kind := range []string{targetPgBouncer, targetPauseproxy} {
		if ctx.Err() != nil {
			break
		}
		var (
			t   *Target
			err error
		)
		if kind == targetPgBouncer {
			t, err = startPgBouncer(ctx, tmp, "pgbouncer-idle", pool, server)
		} else {
			t, _, err = startPauseproxy(ctx, bin, tmp, "pauseproxy-idle", pool, staticDatabase(server), 0)
		}
		if err != nil {
			out = append(out, IdleResult{Target: kind, Clients: opts.IdleClients, Status: "failed", Error: err.Error()})
			continue
		}
		log.Info("idle clients", slog.String("target", kind), slog.Int("clients", opts.IdleClients))
		ir := runIdle(ctx, t, opts.IdleClients)
		ir.Target = kind
		t.Proc.Stop()
		log.Info("idle clients done", slog.String("target", kind), slog.String("status", ir.Status),
			slog.Float64("kib_per_client", round1(ir.KiBPerClient)), slog.String("error", ir.Error))
		out = append(out, ir)
	}
	return out
}

// serverSettings reads the PostgreSQL settings worth recording.
func serverSettings(ctx context.Context, port int) map[string]string {
	out := map[string]string{}
	c, err := pgconn.Connect(ctx, benchDSN(port))
	if err != nil {
		return out
	}
	defer c.Close(context.Background())
	for _, name := range []string{"max_connections", "shared_buffers", "fsync", "synchronous_commit", "full_page_writes", "password_encryption"} {
		rr := c.ExecParams(ctx, "SELECT current_setting($1)", [][]byte{[]byte(name)}, nil, nil, nil).Read()
		if rr.Err == nil && len(rr.Rows) == 1 {
			out[name] = string(rr.Rows[0][0])
		}
	}
	return out
}

func targetInfos(r *Results, gomaxprocs []int) []TargetInfo {
	ts := []TargetInfo{
		{targetDirect, "PostgreSQL itself, one backend per client connection"},
		{targetPgBouncer, r.Versions.PgBouncer + " (Debian), one process, run as the postgres OS user"},
		{targetPauseproxy, fmt.Sprintf("pauseproxy %s, GOMAXPROCS unset (Go's default: %d)", r.Versions.Pauseproxy, r.Machine.NProc)},
	}
	if r.Summary(scGOMAXPROCS) != nil {
		for _, n := range gomaxprocs {
			ts = append(ts, TargetInfo{gomaxprocsTarget(n), fmt.Sprintf("the same pauseproxy binary and configuration with GOMAXPROCS=%d", n)})
		}
	}
	if len(r.Switchover) > 0 {
		ts = append(ts,
			TargetInfo{targetPauseproxyFollow, "switchover only: pauseproxy with Patroni discovery, not told of the switchover"},
			TargetInfo{targetPgBouncerScripted, "switchover only: PgBouncer driven by a PAUSE / switchover / RELOAD / RESUME script, today's practice"})
	}
	return ts
}

// notMeasured lists, for the report, what this run did not measure and why.
func notMeasured(r *Results, opts Options) []string {
	var out []string
	for _, id := range allScenarioIDs {
		if !slices.Contains(opts.Scenarios, id) {
			out = append(out, fmt.Sprintf("Scenario %s: not selected (--scenarios).", id))
		}
	}
	if slices.Contains(opts.Scenarios, scGOMAXPROCS) && r.Machine.NProc < 2 {
		out = append(out, "GOMAXPROCS curve: the machine has one CPU.")
	}
	for _, g := range r.Goals {
		// Goals of scenarios left out are covered by the lines above.
		if g.Status == goalNotMeasured && !strings.Contains(g.Note, "not run") {
			out = append(out, fmt.Sprintf("Goal %q: %s.", g.Text, strings.TrimSuffix(g.Note, ".")))
		}
	}
	switch {
	case !opts.Profile:
		out = append(out, "CPU profile of pauseproxy: not taken (--profile=false).")
	case r.Profile != nil && r.Profile.Status != "ok":
		out = append(out, fmt.Sprintf("CPU profile of pauseproxy: %s: %s.", r.Profile.Status, oneLine(r.Profile.Error)))
	}
	if r.Mode == "quick" {
		out = append(out, fmt.Sprintf("Quick mode: %d rounds of %s, %d idle clients instead of 10,000, a %s switchover run; figures are indicative only.",
			opts.Rounds, opts.Duration, opts.IdleClients, opts.SwitchoverDuration))
	}
	out = append(out,
		"Pooler on cores of its own: pgbench, the pooler and PostgreSQL share the same cores, so every CPU cycle a pooler spends is taken from PostgreSQL and pgbench. On a machine where the pooler has spare cores, ratios to direct are higher and the GOMAXPROCS curve steeper.",
		"Unix-socket clients and TLS: every connection is TCP over loopback without TLS.",
		"Session pooling and statement pooling: both poolers run in transaction mode only.",
		"Direct PostgreSQL with 10,000 idle clients: that would be 10,000 backends; not a configuration anyone runs.",
	)
	return out
}
