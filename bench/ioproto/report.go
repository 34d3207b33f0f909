package main

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
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
// (proc(5); 100 on every Linux architecture Go supports).
const clockTicks = 100

// targetCPU is the user plus system CPU time of t's process and the
// context switches of its threads so far; zero for direct.
func targetCPU(t *target) (time.Duration, int64) {
	if t.cmd == nil {
		return 0, 0
	}
	pid := t.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	cpu, _ := parseStatCPU(b)
	var switches int64
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, f := range tasks {
		st, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(st), "\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				switches += n
			}
		}
	}
	return cpu, switches
}

// parseStatCPU reads utime and stime (fields 14 and 15, proc(5)), counted
// from the last ')' since the command name may hold anything.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields", len(f))
	}
	u, _ := strconv.ParseInt(f[14-3], 10, 64)
	s, _ := strconv.ParseInt(f[15-3], 10, 64)
	return time.Duration(u+s) * time.Second / clockTicks, nil
}

// syscallCount is what perf stat counted during one run.
type syscallCount struct {
	syscalls, switches float64 // per transaction
}

// countSyscalls runs sc once more against each pooler with perf stat
// attached to it, and returns system calls and context switches per
// transaction. Failures leave a target out.
func countSyscalls(ctx context.Context, dir string, targets []*target, sc scenario) map[string]syscallCount {
	out := make(map[string]syscallCount)
	for _, t := range targets {
		if t.cmd == nil {
			continue
		}
		csv := filepath.Join(dir, "perf-"+t.name+".csv")
		perf := exec.Command("perf", "stat", "-x", ",", "-o", csv, "-e", "raw_syscalls:sys_enter,context-switches",
			"-p", strconv.Itoa(t.cmd.Process.Pid))
		if err := perf.Start(); err != nil {
			logf("perf stat: %v", err)
			return out
		}
		time.Sleep(300 * time.Millisecond) // let perf attach
		res, err := runScenario(ctx, dir, t, sc)
		perf.Process.Signal(syscall.SIGINT)
		perf.Wait()
		if err != nil || res.txns == 0 {
			logf("perf run against %s: %v", t.name, err)
			continue
		}
		b, err := os.ReadFile(csv)
		if err != nil {
			continue
		}
		var c syscallCount
		for line := range strings.SplitSeq(string(b), "\n") {
			f := strings.Split(line, ",")
			if len(f) < 3 {
				continue
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue
			}
			switch f[2] {
			case "raw_syscalls:sys_enter":
				c.syscalls = v / float64(res.txns)
			case "context-switches":
				c.switches = v / float64(res.txns)
			}
		}
		logf("perf %-12s syscalls/tx %.2f switches/tx %.2f", t.name, c.syscalls, c.switches)
		out[t.name] = c
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is "median (min-max)".
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	m := fmt.Sprintf(format, median(v))
	if len(v) == 1 {
		return m
	}
	return fmt.Sprintf("%s (%s-%s)", m, fmt.Sprintf(format, slices.Min(v)), fmt.Sprintf(format, slices.Max(v)))
}

// report is the Markdown report: per scenario, per target, medians over
// rounds and ratios to PgBouncer computed within each round.
func report(targets []*target, scs []scenario, results map[string]map[string][]result, sys map[string]syscallCount, o measureOptions, load []string) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "ioproto on %s: %d CPUs, %d round(s), pool %d, pgbench scale %d; load average %s at the start, %s at the end.\n\n",
		host, numCPU(), o.Rounds, o.Pool, scale, load[0], load[len(load)-1])
	for _, sc := range scs {
		fmt.Fprintf(&b, "### %s: pgbench %s\n\n", sc.name, strings.Join(sc.args, " "))
		if sc.latency {
			b.WriteString("| target | TPS | CPU µs/tx | CPU / PgBouncer | p50 µs | added p50 µs (over direct) | switches/tx |\n|---|---|---|---|---|---|---|\n")
		} else {
			b.WriteString("| target | TPS | TPS / PgBouncer | CPU µs/tx | CPU / PgBouncer | switches/tx |\n|---|---|---|---|---|---|\n")
		}
		byT := results[sc.name]
		bouncer := byT["pgbouncer"]
		direct := byT["direct"]
		for _, t := range targets {
			rs := byT[t.name]
			var tps, cpu, tpsR, cpuR, p50, added, sw []float64
			for i, r := range rs {
				tps = append(tps, r.tps)
				p50 = append(p50, float64(r.p50.Microseconds()))
				if i < len(direct) {
					added = append(added, float64((r.p50 - direct[i].p50).Microseconds()))
				}
				if t.cmd == nil {
					continue
				}
				c := perTx(r.cpu, r.txns)
				cpu = append(cpu, c)
				sw = append(sw, float64(r.switches)/float64(r.txns))
				if i < len(bouncer) {
					tpsR = append(tpsR, r.tps/bouncer[i].tps)
					if bc := perTx(bouncer[i].cpu, bouncer[i].txns); bc > 0 {
						cpuR = append(cpuR, c/bc)
					}
				}
			}
			if sc.latency {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", t.name, spread(tps, "%.0f"), spread(cpu, "%.1f"), spread(cpuR, "%.2f"),
					spread(p50, "%.0f"), spread(added, "%.0f"), spread(sw, "%.2f"))
			} else {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", t.name, spread(tps, "%.0f"), spread(tpsR, "%.2f"), spread(cpu, "%.1f"),
					spread(cpuR, "%.2f"), spread(sw, "%.2f"))
			}
		}
		b.WriteString("\n")
	}
	if len(sys) > 0 {
		fmt.Fprintf(&b, "### perf stat during one more %s run\n\n| target | system calls/tx | context switches/tx |\n|---|---|---|\n", scs[0].name)
		for _, t := range targets {
			if c, ok := sys[t.name]; ok {
				fmt.Fprintf(&b, "| %s | %.2f | %.2f |\n", t.name, c.syscalls, c.switches)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("Medians over rounds, (min-max) across rounds; ratios are computed within a round, then their median taken. CPU is utime+stime of the pooler's process from /proc; switches are voluntary plus involuntary context switches of its threads.\n")
	return b.String()
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + bytes.Count(b[:min(len(b), 9)], []byte("processor"))
}
