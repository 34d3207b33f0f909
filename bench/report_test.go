package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeRuns makes two rounds of select-simple and select-prepared against
// the three targets, with PgBouncer failing prepared as it does in
// transaction mode.
func fakeRuns() ([]Scenario, []Run) {
	scs := pgbenchScenarios([]int{1})
	var keep []Scenario
	for _, sc := range scs {
		if sc.ID == scSelectSimple || sc.ID == scSelectPrepared || sc.ID == scLatency {
			keep = append(keep, sc)
		}
	}
	tps := map[string][2]float64{ // round 1, round 2
		targetDirect:     {20000, 24000},
		targetPgBouncer:  {15000, 18000},
		targetPauseproxy: {17000, 21600},
	}
	var runs []Run
	for round := 1; round <= 2; round++ {
		for _, t := range comparedTargets {
			v := tps[t][round-1]
			runs = append(runs, Run{Scenario: scSelectSimple, Target: t, Round: round, OK: true,
				PgbenchResult: PgbenchResult{TPS: v, Processed: int64(v * 10)}, CPUSeconds: cpuFor(t, v)})
			prep := Run{Scenario: scSelectPrepared, Target: t, Round: round, OK: true, PgbenchResult: PgbenchResult{TPS: v, Processed: int64(v * 10)}}
			if t == targetPgBouncer {
				prep.OK = false
				prep.AbortedClients = 49
				prep.Error = `ERROR:  prepared statement "P_0" already exists`
			}
			runs = append(runs, prep)
			lat := Run{Scenario: scLatency, Target: t, Round: round, OK: true, PgbenchResult: PgbenchResult{TPS: 5000, Processed: 50000},
				P50us: 100 + float64(round), P99us: 300}
			switch t {
			case targetPgBouncer:
				lat.P50us += 25
				lat.P99us += 100
			case targetPauseproxy:
				lat.P50us += 20 + float64(round)*10 // added 30 then 40
				lat.P99us += 50
			}
			runs = append(runs, lat)
		}
	}
	return keep, runs
}

func cpuFor(target string, tps float64) float64 {
	if target == targetDirect {
		return 0
	}
	return tps * 10 / 1000 * 0.03
}

func TestSummarize(t *testing.T) {
	scs, runs := fakeRuns()
	sums := summarize(scs, runs)
	r := &Results{Scenarios: sums}

	simple := r.Summary(scSelectSimple)
	pp := simple.Target(targetPauseproxy)
	if pp.Status != "ok" || pp.OKRuns != 2 || pp.TPS != (Spread{19300, 17000, 21600, 2}) {
		t.Fatalf("pauseproxy select-simple: %+v", pp)
	}
	// Ratios per round: 17000/20000 = 0.85 and 21600/24000 = 0.90.
	if got := pp.Ratios[targetDirect]; !near(got.Median, 0.875) || !near(got.Min, 0.85) || !near(got.Max, 0.90) || got.N != 2 {
		t.Fatalf("ratio to direct: %+v", got)
	}
	if got := pp.Ratios[targetPgBouncer]; !near(got.Min, 17000.0/15000) || !near(got.Max, 1.2) {
		t.Fatalf("ratio to pgbouncer: %+v", got)
	}
	if got := pp.CPUPer1000; !near(got.Median, 0.03) {
		t.Fatalf("cpu per 1000: %+v", got)
	}

	prep := r.Summary(scSelectPrepared)
	pgb := prep.Target(targetPgBouncer)
	if pgb.Status != "failed" || pgb.Aborted != 98 || !strings.Contains(pgb.Error, "P_0") || pgb.TPS.Valid() {
		t.Fatalf("pgbouncer prepared: %+v", pgb)
	}
	if _, ok := prep.Target(targetPauseproxy).Ratios[targetPgBouncer]; ok {
		t.Fatal("a ratio to a failed target")
	}

	lat := r.Summary(scLatency).Target(targetPauseproxy)
	if lat.AddedP50us != (Spread{35, 30, 40, 2}) || !near(lat.AddedP99us.Median, 50) {
		t.Fatalf("added latency: %+v %+v", lat.AddedP50us, lat.AddedP99us)
	}
	if r.Summary(scLatency).Target(targetDirect).AddedP50us.Valid() {
		t.Fatal("direct has no added latency")
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestJudge(t *testing.T) {
	tests := []struct {
		name    string
		s       Spread
		atLeast bool
		want    string
	}{
		{"all above", Spread{1.2, 1.15, 1.3, 3}, true, goalMet},
		{"median above, min below", Spread{1.12, 1.05, 1.3, 3}, true, goalBorderline},
		{"median below", Spread{1.05, 1.0, 1.2, 3}, true, goalNotMet},
		{"upper bound met", Spread{20, 18, 25, 3}, false, goalMet},
		{"upper bound crossed", Spread{25, 20, 35, 3}, false, goalBorderline},
		{"upper bound missed", Spread{40, 35, 45, 3}, false, goalNotMet},
	}
	for _, tt := range tests {
		threshold := 1.10
		if !tt.atLeast {
			threshold = 30
		}
		if got := judge(tt.s, threshold, tt.atLeast); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// fakeResults is a complete Results as a run would produce it, with some
// of everything: failures, a not-available switchover, Go benchmarks.
func fakeResults() *Results {
	scs, runs := fakeRuns()
	r := &Results{
		Mode:     "quick",
		Command:  "go run ./bench --quick",
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Finished: time.Date(2026, 1, 2, 3, 9, 5, 0, time.UTC),
		Machine:  Machine{NProc: 2, CPUModel: "Test CPU | with a pipe", MemTotal: "8.0 GiB", LoadBefore: "1 1 1", LoadAfter: "2 2 2"},
		Versions: Versions{PostgreSQL: "15.18", PgBouncer: "PgBouncer 1.18.0", Pauseproxy: "abc123", Go: "go1.26.8"},
		Settings: Settings{Rounds: 2, DurationSeconds: 5, Scale: 16, IdleClients: 1000, SwitchoverSeconds: 20,
			Pool:       PoolSettings{PoolMode: "transaction", PoolSize: 20, MaxClientConn: 1200, AuthType: "md5", ClientTLSMode: "disable", ServerTLSMode: "disable"},
			PostgreSQL: map[string]string{"fsync": "off"}},
		Runs:      runs,
		Scenarios: summarize(scs, runs),
		Idle: []IdleResult{
			{Target: targetPgBouncer, Clients: 1000, Opened: 1000, RSSBefore: 8 << 20, RSSAfter: 9 << 20, KiBPerClient: 1.0, Status: "ok"},
			{Target: targetPauseproxy, Clients: 1000, Opened: 1000, RSSBefore: 9 << 20, RSSAfter: 20 << 20, KiBPerClient: 11.3, Status: "ok"},
		},
		Switchover: []SwitchoverResult{
			{Target: targetPauseproxy, Method: methodPauseproxy, Status: "not available", Reason: "no switchover command"},
			{Target: targetPauseproxyFollowS, Method: methodFollowS, Workload: workloadSelect, Status: "ok", LongestStallSeconds: 1.4, WritableAtSeconds: 2.0, StallEndAtSeconds: 2.05,
				ReleaseAfterWritableSeconds: 0.05, Pgbench: PgbenchResult{TPS: 9000, Processed: 180000}},
			{Target: targetPgBouncerScripted, Method: methodPgBouncer, Status: "ok", LongestStallSeconds: 2.7, WritableAtSeconds: 2.1, StallEndAtSeconds: 2.9,
				ReleaseAfterWritableSeconds: 0.8, Pgbench: PgbenchResult{TPS: 900, Processed: 18000}},
		},
		Profile: &Profile{Status: "ok", Command: "perf record", TPS: 10000,
			Syscalls: []SyscallCount{{Target: targetPgBouncer, PerTx: 4.1, SwitchesPerTx: 0.05, TPS: 12000}, {Target: targetPauseproxy, PerTx: 8.3, SwitchesPerTx: 1.25, TPS: 11000}},
			Top:      []ProfileEntry{{"[kernel] tcp_sendmsg", 30}, {"runtime.mallocgc", 10}},
			Areas:    []ProfileEntry{{"kernel (network stack, system calls, scheduling)", 30}, {"runtime: allocation and garbage collection", 10}}},
		GoBench: GoBench{Status: "ok", Command: goBenchCommand("200ms"), Packages: []string{"./internal/wire"}, Benchmarks: []GoBenchmark{
			{Package: "github.com/pauseproxy/pauseproxy/internal/wire", Name: "BenchmarkForward-2", Iterations: 100, NsPerOp: 900, AllocsPerOp: 0},
			{Package: "github.com/pauseproxy/pauseproxy/internal/wire", Name: "BenchmarkBatch-2", Iterations: 100, NsPerOp: 2000, BytesPerOp: 64, AllocsPerOp: 1},
		}},
	}
	r.Targets = targetInfos(r, []int{1})
	r.Goals = evalGoals(r)
	r.NotMeasured = notMeasured(r, Options{Quick: true, Scenarios: []string{scSelectSimple, scSelectPrepared, scLatency, scIdle, scSwitchover}}.withDefaults())
	return r
}

func TestGoals(t *testing.T) {
	r := fakeResults()
	want := map[string]string{
		"Select-only (simple, 50 clients): pauseproxy TPS / PgBouncer TPS": goalMet, // 1.13 and 1.20 against 1.10
		"Select-only (simple, 50 clients): pauseproxy TPS / direct TPS":    goalMet,
		"prepared":                 goalMet,
		"(-C)":                     goalNotMeasured,
		"idle client":              goalMet,
		"Added latency":            goalNotMet, // 30 and 40 µs against 30: median 35
		"Allocations":              goalNotMet,
		"Switchover under TPC-B":   goalNotMeasured,
		"behind pauseproxy's back": goalMet,
		"clients released after":   goalNotMeasured,
		"GOMAXPROCS":               goalNotMeasured,
	}
	for frag, status := range want {
		found := false
		for _, g := range r.Goals {
			if strings.Contains(g.Text, frag) {
				found = true
				if g.Status != status {
					t.Errorf("goal %q: %s (%s; %s), want %s", g.Text, g.Status, g.Measured, g.Note, status)
				}
			}
		}
		if !found {
			t.Errorf("no goal mentions %q", frag)
		}
	}
	if len(r.Goals) != len(want) {
		t.Errorf("%d goals, want %d", len(r.Goals), len(want))
	}
}

func TestWriteResults(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "stale.svg"), []byte("old"), 0o644)
	r := fakeResults()
	if err := writeResults(dir, r); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale.svg")); err == nil {
		t.Error("a chart of an earlier run was left behind")
	}
	for _, name := range []string{"results.md", "results.json", "tps-ratio.svg", "latency.svg", "cpu.svg", "idle.svg"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s not written: %v", name, err)
		}
	}
	svgs, _ := filepath.Glob(filepath.Join(dir, "*.svg"))
	for _, f := range svgs {
		b, _ := os.ReadFile(f)
		if err := wellFormed(b); err != nil {
			t.Errorf("%s is not well-formed XML: %v", filepath.Base(f), err)
		}
	}

	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	for _, want := range []string{
		"![Throughput relative to direct PostgreSQL](tps-ratio.svg)",
		"| **failed** |",           // PgBouncer's prepared cell
		`prepared statement "P_0"`, // and why
		"0.88 (0.85–0.90, n=2)",    // pauseproxy / direct select-simple
		"| pauseproxy | tpcb | **not available** |",
		"| pauseproxy-follow-select | select-only | **ok** | 0 | 0 | 1.40 s |",
		"Test CPU \\| with a pipe", // escaped in a table cell
		"**This is a quick run**",
		"| BenchmarkBatch-2 |",
		"## What was not measured, and why",
		"## Where pauseproxy spends its CPU",
		"| `runtime.mallocgc` | 10.0 % |",
		"| pauseproxy | 8.30 | 1.25 | 11000 |",
		"### What is in the way",
		"while making 2.02× as many system calls (8.30 against 4.10 per transaction)",
		"go run ./bench --quick",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}

	// results.json holds everything the report needs: re-rendering from it
	// gives the same Markdown.
	var back Results
	b, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	if err := rerender(filepath.Join(dir, "results.json"), dir2); err != nil {
		t.Fatal(err)
	}
	md2, _ := os.ReadFile(filepath.Join(dir2, "results.md"))
	if string(md2) != string(md) {
		t.Error("re-rendering results.json changed results.md")
	}
}

func wellFormed(b []byte) error {
	d := xml.NewDecoder(strings.NewReader(string(b)))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func TestBarChartSVG(t *testing.T) {
	c := BarChart{
		Title: `TPS <ratio> & "more"`, YLabel: "x",
		Groups: []string{"a", "b"},
		Series: []Series{
			{Name: "pgbouncer", Values: []Bar{{Value: 0.7, Min: 0.6, Max: 0.8}, {Missing: true, Note: "failed"}}},
			{Name: "pauseproxy", Values: []Bar{{Value: 0.9, Min: 0.9, Max: 0.9}, {Value: 1.1, Min: 1, Max: 1.2}}},
		},
		Refs: []RefLine{{1, "direct = 1.0"}},
	}
	svg := c.SVG()
	if err := wellFormed([]byte(svg)); err != nil {
		t.Fatalf("not well-formed: %v\n%s", err, svg)
	}
	for _, want := range []string{"TPS &lt;ratio&gt; &amp; &#34;more&#34;", ">failed<", ">1.10<", "direct = 1.0", "whiskers: min–max"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// One rect per present bar plus the background, the legend's and the
	// missing bar's stub.
	if n := strings.Count(svg, "<rect"); n != 1+3+2+1 {
		t.Errorf("%d rects", n)
	}
}

func TestAxis(t *testing.T) {
	tests := []struct {
		top   float64
		yMax  float64
		ticks int
	}{
		{1.0, 1.2, 6},     // step 0.2
		{0.88, 1, 10},     // step 0.1
		{16, 20, 8},       // step 2.5
		{24000, 30000, 6}, // step 5000
		{0, 1, 1},
	}
	for _, tt := range tests {
		yMax, ticks := axis(tt.top)
		if !near(yMax, tt.yMax) || ticks != tt.ticks {
			t.Errorf("axis(%v) = %v, %d; want %v, %d", tt.top, yMax, ticks, tt.yMax, tt.ticks)
		}
	}
}

func TestOnlyCutInFlight(t *testing.T) {
	for _, tc := range []struct {
		errs []string
		want bool
	}{
		{nil, false},
		{[]string{"ERROR:  pauseproxy: server connection lost during the transaction: terminating connection due to administrator command (57P01)"}, true},
		{[]string{"FATAL:  terminating connection due to administrator command (57P01)", "ERROR:  pauseproxy: server connection lost during the transaction: EOF"}, true},
		{[]string{"(57P01)", "ERROR:  cannot execute UPDATE in a read-only transaction"}, false},
	} {
		if got := onlyCutInFlight(tc.errs); got != tc.want {
			t.Errorf("onlyCutInFlight(%q) = %v, want %v", tc.errs, got, tc.want)
		}
	}
}
