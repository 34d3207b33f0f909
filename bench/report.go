package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Results is everything one run measured; results.json is this struct and
// results.md is rendered from it alone, so a report can be re-rendered from
// a JSON file.
type Results struct {
	Mode     string       `json:"mode"` // quick or full
	Command  string       `json:"command"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Machine  Machine      `json:"machine"`
	Versions Versions     `json:"versions"`
	Settings Settings     `json:"settings"`
	Targets  []TargetInfo `json:"targets"`
	Goals    []Goal       `json:"goals"`

	Scenarios  []ScenarioSummary  `json:"scenarios"`
	Idle       []IdleResult       `json:"idle_clients,omitempty"`
	Switchover []SwitchoverResult `json:"switchover,omitempty"`
	GoBench    GoBench            `json:"go_benchmarks"`
	Profile    *Profile           `json:"profile,omitempty"`
	// NotMeasured lists what this run could not measure and why.
	NotMeasured []string `json:"not_measured"`
	Runs        []Run    `json:"runs"`
}

// Settings are the knobs of the run.
type Settings struct {
	Rounds          int     `json:"rounds"`
	DurationSeconds float64 `json:"duration_seconds"`
	Scale           int     `json:"pgbench_scale"`
	IdleClients     int     `json:"idle_clients"`
	// SwitchoverSeconds is the length of the TPC-B run around the
	// switchover.
	SwitchoverSeconds float64           `json:"switchover_seconds"`
	Pool              PoolSettings      `json:"pool"`
	PostgreSQL        map[string]string `json:"postgresql"`
	Network           string            `json:"network"`
}

// TargetInfo says what a target name stands for.
type TargetInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Summary returns the summary of scenario id, or nil.
func (r *Results) Summary(id string) *ScenarioSummary {
	for i := range r.Scenarios {
		if r.Scenarios[i].ID == id {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// IdleOf returns the idle-clients result of target, or nil.
func (r *Results) IdleOf(target string) *IdleResult {
	for i := range r.Idle {
		if r.Idle[i].Target == target {
			return &r.Idle[i]
		}
	}
	return nil
}

// SwitchoverOf returns the switchover result of target, or nil.
func (r *Results) SwitchoverOf(target string) *SwitchoverResult {
	for i := range r.Switchover {
		if r.Switchover[i].Target == target {
			return &r.Switchover[i]
		}
	}
	return nil
}

// chartFile is a chart the report writes and embeds.
type chartFile struct {
	Name  string
	Alt   string
	Chart BarChart
}

// writeResults writes results.json, results.md and the charts into dir,
// replacing the previous ones.
func writeResults(dir string, r *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
	for _, f := range old {
		os.Remove(f)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	charts := buildCharts(r)
	for _, c := range charts {
		if err := os.WriteFile(filepath.Join(dir, c.Name), []byte(c.Chart.SVG()), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(renderMarkdown(r, charts)), 0o644)
}

// throughputScenarios are the scenarios of the TPS-ratio chart and table:
// every pgbench scenario against direct, PgBouncer and pauseproxy.
var throughputScenarios = []string{scSelectSimple, scTPCB, scSelectExtended, scSelectPrepared, scConnect, scLatency}

// comparedTargets are the columns of the main tables.
var comparedTargets = []string{targetDirect, targetPgBouncer, targetPauseproxy}

func buildCharts(r *Results) []chartFile {
	var charts []chartFile

	// TPS relative to direct, without -C: PgBouncer's -C rate is about ten
	// times direct's, which would flatten every other bar.
	ratio := BarChart{Title: "Throughput relative to direct PostgreSQL (higher is better)", YLabel: "TPS / direct TPS (same round)",
		Refs: []RefLine{{1, "direct = 1.0"}}}
	for _, id := range throughputScenarios {
		if id == scConnect || r.Summary(id) == nil {
			continue
		}
		ratio.Groups = append(ratio.Groups, id)
	}
	for _, t := range []string{targetPgBouncer, targetPauseproxy} {
		s := Series{Name: t, Color: targetColors[t]}
		for _, id := range ratio.Groups {
			sum := r.Summary(id)
			var sp Spread
			if ts := sum.Target(t); ts != nil {
				sp = ts.Ratios[targetDirect]
			}
			s.Values = append(s.Values, barOf(sp, missingNote(sum, t)))
		}
		ratio.Series = append(ratio.Series, s)
	}
	if len(ratio.Groups) > 0 {
		charts = append(charts, chartFile{"tps-ratio.svg", "Throughput relative to direct PostgreSQL", ratio})
	}

	if sum := r.Summary(scConnect); sum != nil {
		c := BarChart{Title: "New connection per transaction (pgbench -C, 16 clients)", YLabel: "TPS", Format: "%.0f", Groups: []string{"-C"}}
		for _, t := range comparedTargets {
			c.Series = append(c.Series, Series{Name: t, Color: targetColors[t], Values: []Bar{barOf(tpsOf(sum, t), missingNote(sum, t))}})
		}
		charts = append(charts, chartFile{"connect.svg", "TPS with a new connection per transaction", c})
	}

	if sum := r.Summary(scLatency); sum != nil {
		c := BarChart{Title: "Latency per transaction, 1 client, select-only (lower is better)", YLabel: "µs", Format: "%.0f",
			Groups: []string{"p50", "p99"}}
		for _, t := range comparedTargets {
			s := Series{Name: t, Color: targetColors[t]}
			ts := sum.Target(t)
			var p50, p99 Spread
			if ts != nil {
				p50, p99 = ts.P50us, ts.P99us
			}
			s.Values = []Bar{barOf(p50, missingNote(sum, t)), barOf(p99, missingNote(sum, t))}
			c.Series = append(c.Series, s)
		}
		charts = append(charts, chartFile{"latency.svg", "Latency per transaction at 1 client", c})
	}

	cpu := BarChart{Title: "Pooler CPU per 1,000 transactions (lower is better)", YLabel: "CPU seconds / 1,000 transactions", Format: "%.3f"}
	for _, id := range throughputScenarios {
		if sum := r.Summary(id); sum != nil {
			cpu.Groups = append(cpu.Groups, id)
		}
	}
	for _, t := range []string{targetPgBouncer, targetPauseproxy} {
		s := Series{Name: t, Color: targetColors[t]}
		for _, id := range cpu.Groups {
			sum := r.Summary(id)
			var sp Spread
			if ts := sum.Target(t); ts != nil {
				sp = ts.CPUPer1000
			}
			s.Values = append(s.Values, barOf(sp, missingNote(sum, t)))
		}
		cpu.Series = append(cpu.Series, s)
	}
	if len(cpu.Groups) > 0 {
		charts = append(charts, chartFile{"cpu.svg", "Pooler CPU seconds per 1,000 transactions", cpu})
	}

	if sum := r.Summary(scGOMAXPROCS); sum != nil {
		c := BarChart{Title: "pauseproxy select-only TPS by GOMAXPROCS (50 clients)", YLabel: "TPS", Format: "%.0f"}
		s := Series{Name: "pauseproxy", Color: targetColors[targetPauseproxy]}
		for _, t := range sum.Targets {
			c.Groups = append(c.Groups, "GOMAXPROCS="+gomaxprocsLabel(r, t.Target))
			s.Values = append(s.Values, barOf(t.TPS, missingNote(sum, t.Target)))
		}
		c.Series = []Series{s}
		if pgb := r.Summary(scSelectSimple); pgb != nil {
			if sp := tpsOf(pgb, targetPgBouncer); sp.Valid() {
				c.Refs = append(c.Refs, RefLine{sp.Median, fmt.Sprintf("PgBouncer (one core), select-simple: %.0f", sp.Median)})
			}
		}
		charts = append(charts, chartFile{"gomaxprocs.svg", "pauseproxy TPS by GOMAXPROCS", c})
	}

	if len(r.Idle) > 0 {
		c := BarChart{Title: "Memory per idle client (lower is better)", YLabel: "KiB of RSS per client", Format: "%.1f",
			Groups: []string{fmt.Sprintf("%d idle clients", r.Settings.IdleClients)}, Refs: []RefLine{{16, "goal: 16 KiB"}}}
		for _, ir := range r.Idle {
			b := Bar{Value: ir.KiBPerClient, Min: ir.KiBPerClient, Max: ir.KiBPerClient}
			if ir.Status != "ok" {
				b = Bar{Missing: true, Note: ir.Status}
			}
			c.Series = append(c.Series, Series{Name: ir.Target, Color: targetColors[ir.Target], Values: []Bar{b}})
		}
		charts = append(charts, chartFile{"idle.svg", "Memory per idle client", c})
	}
	return charts
}

func tpsOf(sum *ScenarioSummary, target string) Spread {
	if ts := sum.Target(target); ts != nil {
		return ts.TPS
	}
	return Spread{}
}

// missingNote is the short label of a bar with no value.
func missingNote(sum *ScenarioSummary, target string) string {
	if sum == nil {
		return "not run"
	}
	ts := sum.Target(target)
	switch {
	case ts == nil || ts.Runs == 0:
		return "not run"
	case ts.OKRuns == 0:
		return "failed"
	}
	return "n/a"
}

// gomaxprocsLabel is the GOMAXPROCS a target ran with, as text.
func gomaxprocsLabel(r *Results, target string) string {
	if n, ok := strings.CutPrefix(target, "pauseproxy-gomaxprocs"); ok {
		return n
	}
	return fmt.Sprintf("%d (default)", r.Machine.NProc)
}

// renderMarkdown renders results.md.
func renderMarkdown(r *Results, charts []chartFile) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	chart := func(name string) {
		for _, c := range charts {
			if c.Name == name {
				w("![%s](%s)\n\n", c.Alt, c.Name)
			}
		}
	}

	w("# pauseproxy benchmark results\n\n")
	w("Produced by `%s` (%s mode) on %s, in %s, from pauseproxy %s.\n\n",
		r.Command, r.Mode, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second), r.Versions.Pauseproxy)
	w("Every figure is a median over rounds, with the spread (min–max) and the number of runs it comes from. ")
	w("Ratios are taken within a round, between runs a few seconds apart, then reduced the same way. ")
	w("The machine is small and shared (load average %s at the start, %s at the end), so absolute numbers drift; compare the ratios. ", r.Machine.LoadBefore, r.Machine.LoadAfter)
	if r.Mode == "quick" {
		w("**This is a quick run**: %d round(s) of %s per run and %d idle clients; it shows that everything works and roughly where things stand, not figures to quote. `go run ./bench` gives the full run.", r.Settings.Rounds, secs(r.Settings.DurationSeconds), r.Settings.IdleClients)
	}
	w("\n\n")

	w("## Goals\n\n")
	w("From the benchmark issue. *Borderline* means the median meets the goal but the spread crosses it.\n\n")
	w("| Goal | Threshold | Measured | Status | Note |\n|---|---|---|---|---|\n")
	for _, g := range r.Goals {
		w("| %s | %s | %s | **%s** | %s |\n", cell(g.Text), cell(g.Threshold), cell(g.Measured), g.Status, cell(g.Note))
	}
	w("\n")
	if text := inTheWay(r); text != "" {
		w("### What is in the way\n\n%s\n\n", text)
	}

	w("## Throughput\n\n")
	chart("tps-ratio.svg")
	w("TPS: median (min–max, runs). Ratios: per round, then median (min–max).\n\n")
	w("| Scenario | direct TPS | PgBouncer TPS | pauseproxy TPS | PgBouncer / direct | pauseproxy / direct | pauseproxy / PgBouncer |\n|---|---|---|---|---|---|---|\n")
	var failures []string
	for _, id := range throughputScenarios {
		sum := r.Summary(id)
		if sum == nil {
			continue
		}
		w("| %s<br>`pgbench %s` |", cell(sum.Title), strings.Join(sum.Args, " "))
		for _, t := range comparedTargets {
			w(" %s |", tpsCell(sum, t))
		}
		w(" %s | %s | %s |\n", ratioCell(sum, targetPgBouncer, targetDirect), ratioCell(sum, targetPauseproxy, targetDirect), ratioCell(sum, targetPauseproxy, targetPgBouncer))
		for _, t := range comparedTargets {
			if ts := sum.Target(t); ts != nil && ts.Status != "ok" {
				failures = append(failures, fmt.Sprintf("%s / %s: %s: %s", id, t, ts.Status, oneLine(ts.Error)))
			}
		}
	}
	w("\n")
	if len(failures) > 0 {
		w("Failures (a failure is a result: the run counted, with its error):\n\n")
		for _, f := range failures {
			w("- %s\n", cell(f))
		}
		w("\n")
	}
	chart("connect.svg")

	if sum := r.Summary(scLatency); sum != nil {
		w("## Latency at 1 client\n\n")
		chart("latency.svg")
		w("From pgbench's per-transaction log (`-l`), percentiles by nearest rank over every transaction of a run; then median (min–max) over rounds. *Added* is the target's percentile minus direct's in the same round.\n\n")
		w("| Target | p50 µs | p99 µs | added p50 µs | added p99 µs | TPS |\n|---|---|---|---|---|---|\n")
		for _, t := range comparedTargets {
			ts := sum.Target(t)
			if ts == nil {
				continue
			}
			if ts.OKRuns == 0 {
				w("| %s | failed: %s | | | | |\n", t, cell(oneLine(ts.Error)))
				continue
			}
			w("| %s | %s | %s | %s | %s | %s |\n", t, fmtSpread(ts.P50us, 0), fmtSpread(ts.P99us, 0), fmtSpread(ts.AddedP50us, 0), fmtSpread(ts.AddedP99us, 0), fmtSpread(ts.TPS, 0))
		}
		w("\n")
	}

	w("## CPU per 1,000 transactions\n\n")
	chart("cpu.svg")
	w("User + system CPU of the pooler process (`/proc/PID/stat` utime + stime) during a run, divided by the transactions pgbench completed. PgBouncer is single-threaded; pauseproxy uses every core it is given.\n\n")
	w("| Scenario | PgBouncer CPU s / 1,000 tx | pauseproxy CPU s / 1,000 tx | pauseproxy / PgBouncer |\n|---|---|---|---|\n")
	for _, id := range throughputScenarios {
		sum := r.Summary(id)
		if sum == nil {
			continue
		}
		pgb, pp := cpuOf(sum, targetPgBouncer), cpuOf(sum, targetPauseproxy)
		rel := "–"
		if pgb.Valid() && pp.Valid() && pgb.Median > 0 {
			rel = fmt.Sprintf("%.2f", pp.Median/pgb.Median)
		}
		w("| %s | %s | %s | %s |\n", id, fmtSpread(pgb, 4), fmtSpread(pp, 4), rel)
	}
	w("\n")

	if sum := r.Summary(scGOMAXPROCS); sum != nil {
		w("## Scaling with GOMAXPROCS\n\n")
		chart("gomaxprocs.svg")
		w("`pgbench %s` through pauseproxy instances that differ only in GOMAXPROCS. pgbench and PostgreSQL run on the same %d cores.\n\n", strings.Join(sum.Args, " "), r.Machine.NProc)
		w("| GOMAXPROCS | TPS | vs GOMAXPROCS=%s | CPU s / 1,000 tx |\n|---|---|---|---|\n", gomaxprocsLabel(r, sum.Baseline))
		for _, ts := range sum.Targets {
			rel := "1"
			if ts.Target != sum.Baseline {
				rel = fmtSpread(ts.Ratios[sum.Baseline], 2)
			}
			tps := fmtSpread(ts.TPS, 0)
			if ts.OKRuns == 0 {
				tps = "failed: " + cell(oneLine(ts.Error))
			}
			w("| %s | %s | %s | %s |\n", gomaxprocsLabel(r, ts.Target), tps, rel, fmtSpread(ts.CPUPer1000, 4))
		}
		w("\n")
	}

	if p := r.Profile; p != nil {
		w("## Where pauseproxy spends its CPU\n\n")
		w("From Linux perf, outside the process (pauseproxy has no pprof endpoint), during extra runs that are not part of the figures above: `%s`.\n\n", p.Command)
		if len(p.Syscalls) > 0 {
			w("| Pooler | System calls per transaction | Context switches per transaction | TPS under perf |\n|---|---|---|---|\n")
			for _, sc := range p.Syscalls {
				if sc.Error != "" {
					w("| %s | failed: %s | | |\n", sc.Target, cell(oneLine(sc.Error)))
					continue
				}
				w("| %s | %.2f | %.2f | %.0f |\n", sc.Target, sc.PerTx, sc.SwitchesPerTx, sc.TPS)
			}
			w("\n")
		}
		if p.Status != "ok" {
			w("Not measured: %s: %s\n\n", p.Status, cell(oneLine(p.Error)))
		} else {
			w("pauseproxy's CPU samples (self time), by area and by symbol:\n\n")
			w("| Area | Share of samples |\n|---|---|\n")
			for _, a := range p.Areas {
				if a.Percent >= 0.5 {
					w("| %s | %.1f %% |\n", cell(a.Name), a.Percent)
				}
			}
			w("\n| Top symbols (self) | Share |\n|---|---|\n")
			for _, e := range p.Top {
				w("| `%s` | %.1f %% |\n", strings.ReplaceAll(e.Name, "|", `\|`), e.Percent)
			}
			w("\n")
		}
	}

	if len(r.Idle) > 0 {
		w("## Idle clients\n\n")
		chart("idle.svg")
		w("Fresh pooler instances; %d clients connect (%d at a time), log in and run `SELECT 1`, then sit idle for %s before the pooler's VmRSS is read. Per client = (RSS after − RSS before) / clients. Direct PostgreSQL is not measured: 10,000 backends are not a configuration anyone runs.\n\n",
			r.Settings.IdleClients, idleParallel, idleSettle)
		w("| Target | Clients | RSS before | RSS after | KiB per client | Time to open |\n|---|---|---|---|---|---|\n")
		for _, ir := range r.Idle {
			if ir.Status != "ok" {
				w("| %s | %d of %d | %s | | %s: %s | |\n", ir.Target, ir.Opened, ir.Clients, mib(ir.RSSBefore), ir.Status, cell(oneLine(ir.Error)))
				continue
			}
			w("| %s | %d | %s | %s | %.1f | %.1f s |\n", ir.Target, ir.Opened, mib(ir.RSSBefore), mib(ir.RSSAfter), ir.KiBPerClient, ir.OpenSeconds)
		}
		w("\n")
	}

	if len(r.Switchover) > 0 {
		w("## Switchover under load\n\n")
		w("A 2-node Patroni cluster on etcd (loop_wait 1 s); `pgbench -M simple -c 16 -j 2 -T %s` through the pooler, TPC-B unless the workload says select-only (`-S`); the switchover starts a third of the way in. The stall is the longest time no client completed a transaction (per-transaction log); *writable* is when the candidate first answered `pg_is_in_recovery() = false` (polled every 10 ms); *released* is when the stall ended. Times are seconds from the start of the switchover.\n\n", secs(r.Settings.SwitchoverSeconds))
		w("| Target | Workload | Status | Failed tx | Aborted clients | Longest stall | Writable at | Released at | Released after writable | Switchover took | TPS |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Switchover {
			workload := s.Workload
			if workload == "" {
				workload = workloadTPCB
			}
			if s.Status == "not available" || s.Pgbench.Processed == 0 && s.Status != "ok" {
				w("| %s | %s | **%s** | | | | | | | | |\n", s.Target, workload, s.Status)
				continue
			}
			w("| %s | %s | **%s** | %d | %d | %.2f s | %.2f | %.2f | %.2f s | %.2f s | %.0f |\n", s.Target, workload, s.Status, s.Pgbench.Failed, s.Pgbench.AbortedClients,
				s.LongestStallSeconds, s.WritableAtSeconds, s.StallEndAtSeconds, s.ReleaseAfterWritableSeconds, s.CommandSeconds, s.Pgbench.TPS)
		}
		w("\n")
		for _, s := range r.Switchover {
			w("- **%s** — method: %s.", s.Target, s.Method)
			if s.Reason != "" {
				w(" %s: %s", s.Status, cell(reasonLine(s.Reason)))
			}
			w("\n")
		}
		w("\n")
	}

	w("## Go benchmarks (hot path)\n\n")
	w("Command: `%s`", r.GoBench.Command)
	if len(r.GoBench.Packages) > 0 {
		w(" (run on the packages that have benchmarks: %s)", strings.Join(r.GoBench.Packages, " "))
	}
	w(".\n\n")
	switch {
	case r.GoBench.Status == "none":
		w("No `Benchmark` function exists under `./internal/` yet, so there are no allocation figures.\n\n")
	case r.GoBench.Status == "skipped":
		w("Not run (`--gobench=false`).\n\n")
	case len(r.GoBench.Benchmarks) > 0:
		w("| Package | Benchmark | ns/op | B/op | allocs/op | other |\n|---|---|---|---|---|---|\n")
		for _, gb := range r.GoBench.Benchmarks {
			var extra []string
			for _, k := range sortedKeys(gb.Extra) {
				extra = append(extra, fmt.Sprintf("%g %s", gb.Extra[k], k))
			}
			w("| %s | %s | %.0f | %.0f | %.0f | %s |\n", strings.TrimPrefix(gb.Package, "github.com/pauseproxy/pauseproxy/"), gb.Name, gb.NsPerOp, gb.BytesPerOp, gb.AllocsPerOp, strings.Join(extra, ", "))
		}
		w("\n")
	}
	if r.GoBench.Status == "failed" {
		w("The command failed:\n\n```\n%s\n```\n\n", r.GoBench.Error)
	}

	w("## What was not measured, and why\n\n")
	for _, n := range r.NotMeasured {
		w("- %s\n", n)
	}
	w("\n")

	w("## Machine, versions, settings\n\n")
	w("| | |\n|---|---|\n")
	w("| CPUs (nproc) | %d |\n| CPU | %s |\n| Memory | %s |\n| Kernel | %s |\n| Load average before / after | %s / %s |\n| Open files limit | %d |\n",
		r.Machine.NProc, cell(r.Machine.CPUModel), r.Machine.MemTotal, r.Machine.Kernel, r.Machine.LoadBefore, r.Machine.LoadAfter, r.Machine.NoFile)
	w("| PostgreSQL | %s |\n| pgbench | %s |\n| PgBouncer | %s |\n| pauseproxy | %s |\n| Go | %s |\n",
		cell(r.Versions.PostgreSQL), cell(r.Versions.Pgbench), cell(r.Versions.PgBouncer), cell(r.Versions.Pauseproxy), cell(r.Versions.Go))
	if r.Versions.Patroni != "" {
		w("| Patroni | %s |\n", cell(r.Versions.Patroni))
	}
	p := r.Settings.Pool
	w("| Rounds × duration | %d × %s per run |\n| pgbench scale | %d |\n| Network | %s |\n", r.Settings.Rounds, secs(r.Settings.DurationSeconds), r.Settings.Scale, cell(r.Settings.Network))
	w("| Pooler settings (both) | pool_mode=%s, default_pool_size=%d, max_client_conn=%d, auth_type=%s (auth_file with clear-text password), client_tls_sslmode=%s, server_tls_sslmode=%s; log_connections=0 and log_disconnections=0 in both; everything else default |\n",
		p.PoolMode, p.PoolSize, p.MaxClientConn, p.AuthType, p.ClientTLSMode, p.ServerTLSMode)
	var pgs []string
	for _, k := range sortedKeys(r.Settings.PostgreSQL) {
		pgs = append(pgs, k+"="+r.Settings.PostgreSQL[k])
	}
	w("| PostgreSQL settings | %s |\n", cell(strings.Join(pgs, ", ")))
	w("\nTargets:\n\n")
	for _, t := range r.Targets {
		w("- `%s`: %s\n", t.Name, t.Description)
	}
	w("\nRaw runs, with every pgbench figure, are in `results.json`.\n\n")
	w("## Reproduce\n\n```\n%s\n```\n\nSee docs/performance.md for the flags and for how to read this report.\n", r.Command)
	return b.String()
}

func tpsCell(sum *ScenarioSummary, target string) string {
	ts := sum.Target(target)
	switch {
	case ts == nil:
		return "–"
	case ts.OKRuns == 0:
		return "**failed**"
	}
	s := fmtSpread(ts.TPS, 0)
	if ts.OKRuns < ts.Runs {
		s += fmt.Sprintf(" (%d of %d runs failed)", ts.Runs-ts.OKRuns, ts.Runs)
	}
	return s
}

func ratioCell(sum *ScenarioSummary, target, other string) string {
	ts := sum.Target(target)
	if ts == nil || !ts.Ratios[other].Valid() {
		return "–"
	}
	return fmtSpread(ts.Ratios[other], 2)
}

func cpuOf(sum *ScenarioSummary, target string) Spread {
	if ts := sum.Target(target); ts != nil {
		return ts.CPUPer1000
	}
	return Spread{}
}

// reasonLine shortens a failure reason for the report: without the
// pooler's log tail (results.json keeps it), at most 500 characters.
func reasonLine(s string) string {
	if i := strings.Index(s, "; its log ends with:"); i >= 0 {
		s = s[:i]
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// inTheWay explains, from this run's measurements, what keeps the
// throughput and latency goals out of reach; "" when they are all met or
// the figures it needs are missing.
func inTheWay(r *Results) string {
	unmet := false
	for _, g := range r.Goals {
		if g.Status == goalNotMet && (strings.Contains(g.Text, "TPS") || strings.Contains(g.Text, "latency")) {
			unmet = true
		}
	}
	p := r.Profile
	sum := r.Summary(scSelectSimple)
	if !unmet || p == nil || p.Status != "ok" || sum == nil {
		return ""
	}
	pgbCPU, ppCPU := cpuOf(sum, targetPgBouncer), cpuOf(sum, targetPauseproxy)
	var pgbSys, ppSys *SyscallCount
	for i := range p.Syscalls {
		switch sc := &p.Syscalls[i]; {
		case sc.Error != "":
		case sc.Target == targetPgBouncer:
			pgbSys = sc
		case sc.Target == targetPauseproxy:
			ppSys = sc
		}
	}
	if !pgbCPU.Valid() || !ppCPU.Valid() || pgbCPU.Median == 0 || pgbSys == nil || ppSys == nil {
		return ""
	}
	var own, kernel, sched float64
	for _, a := range p.Areas {
		switch {
		case strings.HasPrefix(a.Name, "pauseproxy "):
			own += a.Percent
		case strings.HasPrefix(a.Name, "kernel"):
			kernel += a.Percent
		case strings.HasPrefix(a.Name, "runtime: scheduler"):
			sched += a.Percent
		}
	}
	var kernelTop []string
	for _, e := range p.Top {
		if strings.HasPrefix(e.Name, "[kernel] ") && len(kernelTop) < 2 {
			kernelTop = append(kernelTop, fmt.Sprintf("`%s` %.1f %%", strings.TrimPrefix(e.Name, "[kernel] "), e.Percent))
		}
	}
	switches := "" // not in results of runs before they were counted
	if ppSys.SwitchesPerTx > 0 || pgbSys.SwitchesPerTx > 0 {
		switches = fmt.Sprintf("pauseproxy's threads were switched out %.2f times per transaction, PgBouncer's %.2f. ", ppSys.SwitchesPerTx, pgbSys.SwitchesPerTx)
	}
	return fmt.Sprintf("The goals not met come down to CPU per transaction: pgbench, the pooler and PostgreSQL share the same cores, so what the pooler spends is taken from the other two. "+
		"In this run pauseproxy spent %.2f× PgBouncer's CPU per select-only transaction (%.4f against %.4f CPU seconds per 1,000) while making %s system calls (%.2f against %.2f per transaction). "+
		"The difference is mostly not in pauseproxy's own code (%.1f %% of its CPU samples) but in the kernel's scheduling and Go's runtime: %.1f %% of the samples are in the kernel, led by %s (waking a sleeping thread, switching tasks), and %.1f %% in the runtime's scheduler and netpoller; "+
		"%s"+
		"PgBouncer is one thread in one epoll loop; pauseproxy parks a goroutine on each socket it waits for, and Go's scheduler parks and wakes OS threads under them. "+
		"See docs/performance.md for what was tried and what is left.",
		ppCPU.Median/pgbCPU.Median, ppCPU.Median, pgbCPU.Median, howMany(ppSys.PerTx, pgbSys.PerTx), ppSys.PerTx, pgbSys.PerTx,
		own, kernel, strings.Join(kernelTop, " and "), sched, switches)
}

// howMany compares two counts in words: "about as many" within 15 %.
func howMany(a, b float64) string {
	if b > 0 && a/b > 0.85 && a/b < 1.15 {
		return "about as many"
	}
	if b > 0 {
		return fmt.Sprintf("%.2f× as many", a/b)
	}
	return "more"
}
