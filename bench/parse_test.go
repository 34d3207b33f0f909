package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// These tests cover the report code only: parsing, statistics, goals and
// rendering. They start nothing, so go test ./... stays fast; the
// benchmark itself runs from main.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The testdata/pgbench-*.out files are real pgbench 15 outputs (stdout and
// stderr): prepared-fail is -M prepared through PgBouncer 1.18 in
// transaction mode, refused a pgbench pointed at a closed port.
func TestParsePgbench(t *testing.T) {
	tests := []struct {
		file       string
		tps        float64
		processed  int64
		latency    float64
		aborted    int
		incomplete bool
		errors     []string
	}{
		{file: "pgbench-select.out", tps: 13784.422142, processed: 27453, latency: 0.290},
		{file: "pgbench-connect.out", tps: 209.124188, processed: 420, latency: 19.127},
		{file: "pgbench-tpcb.out", tps: -1, processed: -1, latency: -1},
		{file: "pgbench-prepared-fail.out", tps: 12696.837495, processed: 25384, latency: 0.315, aborted: 3, incomplete: true,
			errors: []string{`ERROR:  prepared statement "P_0" already exists`, `ERROR:  prepared statement "P_0" does not exist`}},
		{file: "pgbench-refused.out", errors: []string{
			`connection to server at "127.0.0.1", port 47899 failed: Connection refused`,
			"could not create connection for setup",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r := parsePgbench(string(b))
			if tt.tps >= 0 && r.TPS != tt.tps {
				t.Errorf("TPS = %v, want %v", r.TPS, tt.tps)
			}
			if tt.tps < 0 && r.TPS <= 0 {
				t.Errorf("TPS = %v, want > 0", r.TPS)
			}
			if tt.processed >= 0 && r.Processed != tt.processed {
				t.Errorf("Processed = %d, want %d", r.Processed, tt.processed)
			}
			if tt.latency >= 0 && r.LatencyAvgMs != tt.latency {
				t.Errorf("LatencyAvgMs = %v, want %v", r.LatencyAvgMs, tt.latency)
			}
			if r.AbortedClients != tt.aborted || r.Incomplete != tt.incomplete {
				t.Errorf("aborted %d incomplete %v, want %d %v", r.AbortedClients, r.Incomplete, tt.aborted, tt.incomplete)
			}
			if r.Failed != 0 {
				t.Errorf("Failed = %d", r.Failed)
			}
			if !slices.Equal(r.Errors, tt.errors) {
				t.Errorf("Errors = %q, want %q", r.Errors, tt.errors)
			}
		})
	}
}

func TestParsePgbenchFailedTransactions(t *testing.T) {
	r := parsePgbench("number of transactions actually processed: 100\nnumber of failed transactions: 7 (6.542%)\ntps = 12.5 (without initial connection time)\n")
	if r.Failed != 7 || r.Processed != 100 || r.TPS != 12.5 {
		t.Fatalf("%+v", r)
	}
}

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis, as proc(5) warns.
	stat := "4242 (pause proxy) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 5 0 100 0 0 18446744073709551615"
	d, err := parseStatCPU([]byte(stat))
	if err != nil || d != 3250*time.Millisecond {
		t.Fatalf("cpu = %v, %v; want 3.25s", d, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Fatal("short stat: want an error")
	}
	status := "Name:\tpauseproxy\nVmPeak:\t  10000 kB\nVmRSS:\t   2048 kB\n"
	n, err := parseStatusKB([]byte(status), "VmRSS")
	if err != nil || n != 2048*1024 {
		t.Fatalf("rss = %d, %v", n, err)
	}
	if _, err := parseStatusKB([]byte(status), "VmSwap"); err == nil {
		t.Fatal("missing line: want an error")
	}
}

func TestCPUModel(t *testing.T) {
	if got := cpuModel([]byte("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n")); got != "AMD EPYC 7B13" {
		t.Fatal(got)
	}
	if got := cpuModel([]byte("processor\t: 0\nCPU part\t: 0xd0c\n")); got != "0xd0c" {
		t.Fatal(got)
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/pauseproxy/pauseproxy/internal/wire
cpu: AMD EPYC
BenchmarkForwardTransaction-2   	 1000000	      1052 ns/op	       0 B/op	       0 allocs/op
BenchmarkExtendedBatch-2        	  500000	      2311 ns/op	      48 B/op	       2 allocs/op	  3.000 msgs/op
PASS
ok  	github.com/pauseproxy/pauseproxy/internal/wire	3.1s
pkg: github.com/pauseproxy/pauseproxy/internal/router
BenchmarkRewrite-2	200	5000 ns/op
`
	got := parseGoBench(out)
	if len(got) != 3 {
		t.Fatalf("%d benchmarks: %+v", len(got), got)
	}
	b := got[1]
	if b.Package != "github.com/pauseproxy/pauseproxy/internal/wire" || b.Name != "BenchmarkExtendedBatch-2" || b.Iterations != 500000 ||
		b.NsPerOp != 2311 || b.BytesPerOp != 48 || b.AllocsPerOp != 2 || b.Extra["msgs/op"] != 3 {
		t.Fatalf("%+v", b)
	}
	if got[2].Package != "github.com/pauseproxy/pauseproxy/internal/router" || got[2].NsPerOp != 5000 {
		t.Fatalf("%+v", got[2])
	}
}

func TestStats(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Spread
	}{
		{name: "empty", in: nil, want: Spread{}},
		{name: "one", in: []float64{3}, want: Spread{3, 3, 3, 1}},
		{name: "odd", in: []float64{5, 1, 3}, want: Spread{3, 1, 5, 3}},
		{name: "even", in: []float64{4, 1, 3, 2}, want: Spread{2.5, 1, 4, 4}},
		{name: "NaN ignored", in: []float64{math.NaN(), 2, math.Inf(1)}, want: Spread{2, 2, 2, 1}},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.in); got != tt.want {
			t.Errorf("%s: spreadOf(%v) = %+v, want %+v", tt.name, tt.in, got, tt.want)
		}
	}
	sorted := make([]float64, 100)
	for i := range sorted {
		sorted[i] = float64(i + 1) // 1..100
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {99, 99}, {100, 100}, {0.1, 1}} {
		if got := percentile(sorted, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("p99 of one value = %v", got)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing should be NaN")
	}
}

func TestRotate(t *testing.T) {
	s := []string{"a", "b", "c"}
	for k, want := range [][]string{{"a", "b", "c"}, {"b", "c", "a"}, {"c", "a", "b"}, {"a", "b", "c"}} {
		if got := rotate(s, k); !slices.Equal(got, want) {
			t.Errorf("rotate %d = %v, want %v", k, got, want)
		}
	}
	if !slices.Equal(s, []string{"a", "b", "c"}) {
		t.Error("rotate changed its input")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--quick"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if o.Rounds != 2 || o.Duration != 5*time.Second || o.IdleClients != 1000 || o.BenchTime != "200ms" || len(o.Scenarios) != len(allScenarioIDs) {
		t.Fatalf("quick defaults: %+v", o)
	}
	o, err = parseFlags([]string{"--rounds", "7", "--scenarios", "tpcb, connect"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if o.Rounds != 7 || o.Duration != 20*time.Second || o.IdleClients != 10000 || !slices.Equal(o.Scenarios, []string{scTPCB, scConnect}) {
		t.Fatalf("full defaults: %+v", o)
	}
	for _, bad := range [][]string{{"--scenarios", "nope"}, {"--auth", "trust"}, {"extra"}} {
		if _, err := parseFlags(bad, new(strings.Builder)); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

func TestParsePerfReport(t *testing.T) {
	out := `# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 2K of event 'cpu-clock:ppp'
#
# Overhead  Symbol
# ........  ......................................
#
    20.50%  [k] _raw_spin_unlock_irqrestore
    10.00%  [.] runtime.mallocgc
     8.00%  [.] runtime.findRunnable
     6.00%  [.] github.com/pauseproxy/pauseproxy/internal/router.(*session).run
     4.00%  [.] syscall.Syscall6
     3.00%  [.] runtime.memmove
     2.00%  [.] sync/atomic.(*Pointer[github.com/pauseproxy/pauseproxy/internal/pool.conn]).Load
     1.50%  [k] tcp_sendmsg
     1.00%  [.] 0x00000000004a1b2c

#
# (Tip: ...)
`
	es := parsePerfReport(out)
	if len(es) != 9 || es[0] != (ProfileEntry{"[kernel] _raw_spin_unlock_irqrestore", 20.5}) || es[3].Name != "github.com/pauseproxy/pauseproxy/internal/router.(*session).run" {
		t.Fatalf("%+v", es)
	}
	areas := profileAreas(es)
	want := []ProfileEntry{
		{"kernel (network stack, system calls, scheduling)", 22},
		{"runtime: allocation and garbage collection", 10},
		{"runtime: scheduler, netpoller, system-call entry, other", 8},
		{"pauseproxy internal/router", 6},
		{"Go system-call wrappers (syscall, internal/poll)", 4},
		{"runtime: copying and comparing memory", 3},
		{"sync/atomic", 2},
		{"unresolved addresses", 1},
	}
	if len(areas) != len(want) {
		t.Fatalf("areas %+v", areas)
	}
	for i := range want {
		if areas[i].Name != want[i].Name || !near(areas[i].Percent, want[i].Percent) {
			t.Errorf("area %d = %+v, want %+v", i, areas[i], want[i])
		}
	}
}

func TestGoPackage(t *testing.T) {
	for sym, want := range map[string]string{
		"runtime.mallocgc": "runtime",
		"net.(*conn).Read": "net",
		"github.com/jackc/pgx/v5/pgproto3.(*Frontend).Receive":   "github.com/jackc/pgx/v5/pgproto3",
		"sync/atomic.(*Pointer[go.shape.struct { a/b.c }]).Load": "sync/atomic",
		"main":   "",
		"_start": "",
	} {
		if got := goPackage(sym); got != want {
			t.Errorf("goPackage(%q) = %q, want %q", sym, got, want)
		}
	}
}

func TestParsePerfStat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stat.csv")
	// perf stat -e raw_syscalls:sys_enter -x , -o FILE, as perf 6.1 writes it.
	os.WriteFile(path, []byte("# started on Sun Nov 22 03:00:08 2026\n\n144,,raw_syscalls:sys_enter,1176926,100.00,,\n"), 0o644)
	if n, err := parsePerfStat(path); err != nil || n["raw_syscalls:sys_enter"] != 144 {
		t.Fatalf("%v, %v", n, err)
	}
	os.WriteFile(path, []byte("# started\n\n<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n"), 0o644)
	if _, err := parsePerfStat(path); err == nil {
		t.Fatal("not counted: want an error")
	}
}

func TestReasonLine(t *testing.T) {
	got := reasonLine("start the pooler: not accepting clients: dial unix /x: no such file; its log ends with:\nline 1\nline 2")
	if got != "start the pooler: not accepting clients: dial unix /x: no such file" {
		t.Fatal(got)
	}
	if got := reasonLine(strings.Repeat("x", 600)); len(got) != 500+len("…") {
		t.Fatal(len(got))
	}
}
