package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Profile is where pauseproxy spends its CPU under the select-only load,
// sampled from outside with Linux perf (pauseproxy exposes no pprof
// endpoint, and perf needs nothing from the process: Go binaries keep their
// symbol table unless built with -s), and how many system calls each
// pooler makes per transaction.
type Profile struct {
	Command string `json:"command"`
	// Status: ok, not available (no perf), failed.
	Status string  `json:"status"`
	Error  string  `json:"error,omitempty"`
	TPS    float64 `json:"tps"` // pauseproxy's TPS while perf sampled
	// Top are the symbols with the most self time, Areas the same summed
	// by package (kernel symbols as one area).
	Top   []ProfileEntry `json:"top,omitempty"`
	Areas []ProfileEntry `json:"areas,omitempty"`
	// Syscalls per pooler, counted with the raw_syscalls:sys_enter
	// tracepoint during the same workload.
	Syscalls []SyscallCount `json:"syscalls,omitempty"`
}

// ProfileEntry is a symbol or an area and its share of the samples.
type ProfileEntry struct {
	Name    string  `json:"name"`
	Percent float64 `json:"percent"`
}

// SyscallCount is the system calls a pooler made during one run.
type SyscallCount struct {
	Target       string  `json:"target"`
	Syscalls     int64   `json:"syscalls"`
	Transactions int64   `json:"transactions"`
	PerTx        float64 `json:"per_transaction"`
	// ContextSwitches is how often the pooler's threads were switched
	// out (perf's context-switches: a thread going to sleep, in epoll
	// or a futex, or preempted), all threads together.
	ContextSwitches int64   `json:"context_switches"`
	SwitchesPerTx   float64 `json:"context_switches_per_transaction"`
	TPS             float64 `json:"tps"`
	Error           string  `json:"error,omitempty"`
}

// perfFrequency is the sampling rate: a prime, so sampling does not beat
// with periodic work.
const perfFrequency = 499

// profileTopN is how many symbols the report lists.
const profileTopN = 15

// profilePoolers runs sc once through each pooler while perf counts its
// system calls, then once more through pauseproxy while perf samples where
// its CPU goes. These runs are extra: perf's overhead stays out of the
// measured rounds.
func profilePoolers(ctx context.Context, pgb, pp *Target, sc Scenario, d time.Duration, tmp string) Profile {
	secs := strconv.Itoa(max(1, int(d/time.Second)))
	p := Profile{Command: fmt.Sprintf("pgbench %s, once per pooler under perf stat -e raw_syscalls:sys_enter,context-switches -p PID -- sleep %s, once more through pauseproxy under perf record -F %d -p PID -- sleep %s; perf report --no-children --sort sym",
		strings.Join(sc.Args, " "), secs, perfFrequency, secs)}
	perf, err := exec.LookPath("perf")
	if err != nil {
		p.Status, p.Error = "not available", "perf is not installed (Debian package linux-perf)"
		return p
	}
	// Counting and sampling run separately: the syscall tracepoint would
	// show up in the samples.
	for _, t := range []*Target{pgb, pp} {
		statFile := filepath.Join(tmp, "perf-stat-"+t.Name+".csv")
		res, err := underPerf(ctx, t, sc, d, perf, "stat", "-e", "raw_syscalls:sys_enter,context-switches", "-x", ",", "-o", statFile, "-p", strconv.Itoa(t.Proc.PID()), "--", "sleep", secs)
		sys := SyscallCount{Target: t.Name, Transactions: res.Processed, TPS: res.TPS}
		if err == nil {
			var counts map[string]int64
			if counts, err = parsePerfStat(statFile); err == nil && res.Processed > 0 {
				tx := float64(res.Processed)
				sys.Syscalls, sys.PerTx = counts["raw_syscalls:sys_enter"], float64(counts["raw_syscalls:sys_enter"])/tx
				sys.ContextSwitches, sys.SwitchesPerTx = counts["context-switches"], float64(counts["context-switches"])/tx
			}
		}
		if err != nil {
			sys.Error = err.Error()
		}
		p.Syscalls = append(p.Syscalls, sys)
	}

	data := filepath.Join(tmp, "perf.data")
	res, err := underPerf(ctx, pp, sc, d, perf, "record", "-F", strconv.Itoa(perfFrequency), "-p", strconv.Itoa(pp.Proc.PID()), "-o", data, "--", "sleep", secs)
	p.TPS = res.TPS
	if err != nil {
		p.Status, p.Error = "failed", err.Error()
		return p
	}
	out, err := exec.CommandContext(ctx, perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "sym", "-g", "none", "--percent-limit", "0.1").Output()
	if err != nil {
		p.Status, p.Error = "failed", "perf report: "+err.Error()
		return p
	}
	entries := parsePerfReport(string(out))
	if len(entries) == 0 {
		p.Status, p.Error = "failed", "perf report has no samples"
		return p
	}
	p.Status = "ok"
	p.Top = entries[:min(profileTopN, len(entries))]
	p.Areas = profileAreas(entries)
	return p
}

// underPerf runs sc through t for d while perf (with args) watches it.
func underPerf(ctx context.Context, t *Target, sc Scenario, d time.Duration, perf string, args ...string) (PgbenchResult, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, perf, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return PgbenchResult{}, fmt.Errorf("perf %s: %w", args[0], err)
	}
	res, _, runErr := runPgbench(ctx, pgbenchRun{Args: sc.Args, Duration: d, Port: t.Port})
	var perfErr error
	if err := cmd.Wait(); err != nil {
		perfErr = fmt.Errorf("perf %s: %w: %s", args[0], err, tailLines(out.String(), 5))
	}
	if runErr == nil && res.Processed == 0 {
		runErr = fmt.Errorf("pgbench through %s: %s", t.Name, strings.Join(res.Errors, "; "))
	}
	return res, errors.Join(runErr, perfErr)
}

// parsePerfStat reads perf stat -x , output: lines of
// "count,unit,event,...", comments start with '#'. It returns the count of
// each event, by the event's name.
func parsePerfStat(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("perf stat: %q: %w", line, err)
		}
		counts[f[2]] = n
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("perf stat: no count in %s", path)
	}
	return counts, nil
}

// perfLineRE matches a perf report --sort sym line: "  12.34%  [k] symbol"
// ([k] kernel, [.] user space).
var perfLineRE = regexp.MustCompile(`^\s*([0-9.]+)%\s+\[(.)\]\s+(.+?)\s*$`)

// parsePerfReport returns the symbols of perf report --stdio --sort sym,
// kernel ones prefixed "[kernel] ", in the report's order (most first).
func parsePerfReport(out string) []ProfileEntry {
	var es []ProfileEntry
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := perfLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pct, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		name := m[3]
		if m[2] == "k" {
			name = "[kernel] " + name
		}
		es = append(es, ProfileEntry{Name: name, Percent: pct})
	}
	return es
}

// profileAreas sums entries by area (see areaOf), largest first.
func profileAreas(es []ProfileEntry) []ProfileEntry {
	sums := map[string]float64{}
	for _, e := range es {
		sums[areaOf(e.Name)] += e.Percent
	}
	var out []ProfileEntry
	for name, pct := range sums {
		out = append(out, ProfileEntry{Name: name, Percent: pct})
	}
	slices.SortFunc(out, func(a, b ProfileEntry) int {
		if a.Percent != b.Percent {
			if a.Percent > b.Percent {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// gcSymbols mark runtime functions that allocate or collect garbage.
var gcSymbols = []string{"malloc", "gc", "GC", "scan", "mark", "Mark", "sweep", "heap", "Heap", "span", "Span", "newobject", "makeslice", "growslice", "memclr", "Barrier", "wbBuf", "nextFree", "greyobject", "findObject"}

// areaOf names the part of the system a symbol belongs to: the kernel,
// the Go runtime split into allocation/GC and the rest, or the symbol's
// Go package.
func areaOf(sym string) string {
	if strings.HasPrefix(sym, "[kernel] ") {
		return "kernel (network stack, system calls, scheduling)"
	}
	if strings.HasPrefix(sym, "0x") {
		return "unresolved addresses"
	}
	pkg := goPackage(sym)
	switch {
	case pkg == "runtime" && (sym == "runtime.memmove" || sym == "runtime.memequal"):
		return "runtime: copying and comparing memory"
	case pkg == "runtime":
		for _, s := range gcSymbols {
			if strings.Contains(sym, s) {
				return "runtime: allocation and garbage collection"
			}
		}
		return "runtime: scheduler, netpoller, system-call entry, other"
	case pkg == "syscall" || pkg == "internal/poll" || strings.HasPrefix(pkg, "internal/runtime/syscall"):
		return "Go system-call wrappers (syscall, internal/poll)"
	case strings.HasPrefix(pkg, "github.com/pauseproxy/pauseproxy/"):
		return "pauseproxy " + strings.TrimPrefix(pkg, "github.com/pauseproxy/pauseproxy/")
	case pkg == "":
		return "other"
	}
	return pkg
}

// goPackage returns the import path of a Go symbol such as
// "net.(*conn).Read" or "github.com/jackc/pgx/v5/pgproto3.(*Frontend).Receive":
// everything before the first dot after the last slash.
func goPackage(sym string) string {
	// Type arguments ("Pointer[github.com/x/y.T]") hold slashes and dots
	// of other packages.
	if i := strings.IndexByte(sym, '['); i >= 0 {
		sym = sym[:i]
	}
	slash := strings.LastIndex(sym, "/")
	dot := strings.Index(sym[slash+1:], ".")
	if dot < 0 {
		return ""
	}
	return sym[:slash+1+dot]
}
