// Command bench compares pauseproxy with PgBouncer and with PostgreSQL
// reached directly, using pgbench, on one machine in one run, and writes the
// report to bench/results/ (results.md, results.json, SVG charts).
//
//	go run ./bench            full run (several rounds, long durations, 10,000 idle clients)
//	go run ./bench --quick    a few minutes: 2 short rounds, 1,000 idle clients
//
// See docs/performance.md for the flags and for how to read the report.
//
// # What it owns
//
// Everything it starts lives in one temporary directory and dies with it:
// a throwaway PostgreSQL 15 cluster (internal/pgtest), Debian's PgBouncer,
// pauseproxy built from this repository, and for the switchover scenario a
// Patroni cluster on etcd (internal/patronitest). Every child gets a
// parent-death signal. It never touches the machine's own PostgreSQL or
// PgBouncer, and it writes nothing outside the temporary directory but the
// results directory.
//
// # Why rounds and ratios
//
// The machines it runs on are small and shared, so absolute numbers drift
// from minute to minute. Each round runs every scenario once against every
// target, in an order rotated from round to round, and the report gives
// medians with their spread (min and max), and ratios computed within a
// round (pauseproxy's TPS over direct's TPS measured a few seconds apart)
// before taking their median. A ratio whose spread crosses a goal's
// threshold is reported as borderline, not as met.
//
// # Layout
//
//   - main.go: flags and the order of the run.
//   - env.go, procfs.go: the machine, versions, /proc readings.
//   - services.go: starting and stopping PostgreSQL, PgBouncer, pauseproxy.
//   - pgbench.go: running pgbench and parsing its output and per-transaction logs.
//   - scenarios.go: the pgbench scenarios and the round loop.
//   - idle.go, switchover.go: the scenarios that are not a plain pgbench run.
//   - profile.go, gobench.go: perf samples and syscall counts, the Go benchmarks.
//   - stats.go, summary.go, goals.go: medians, spreads, within-round ratios, goals.
//   - report.go, svg.go: results.json, results.md and the charts.
//
// bench/ioproto is a separate command: minimal forwarders of three I/O
// architectures measured against PgBouncer, apart from pauseproxy's logic.
//
// The report code (parsing, statistics, rendering) is tested by go test
// without starting anything; the benchmark itself runs only from main.
package main
