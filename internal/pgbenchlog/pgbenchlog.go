// Package pgbenchlog reads pgbench's per-transaction logs (-l), for the
// benchmark, the demo and the tests that measure stalls under load. Format
// (PostgreSQL 15 docs, pgbench, "Per-Transaction Logging"):
//
//	client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]
//
// where time is the latency in microseconds, or "failed" / "skipped", and
// time_epoch.time_us is when the transaction completed.
package pgbenchlog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Log is one or more per-transaction log files merged.
type Log struct {
	// Latencies of the successful transactions in microseconds, sorted
	// after Sort.
	Latencies []float64
	// Done are the completion times of every logged transaction, failed
	// ones included, in microseconds since the Unix epoch, sorted after
	// Sort.
	Done   []int64
	Failed int
	// Committed counts the successful transactions of each client, and
	// LastCommit is when the last of them completed (µs since the epoch).
	Committed  map[int]int
	LastCommit int64
}

// Parse adds the lines of one log file to l.
func (l *Log) Parse(r io.Reader) error {
	if l.Committed == nil {
		l.Committed = map[int]int{}
	}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 6 {
			return fmt.Errorf("line %d: want at least 6 fields, got %d", n, len(f))
		}
		client, err0 := strconv.Atoi(f[0])
		sec, err1 := strconv.ParseInt(f[4], 10, 64)
		usec, err2 := strconv.ParseInt(f[5], 10, 64)
		if err0 != nil || err1 != nil || err2 != nil {
			return fmt.Errorf("line %d: bad client or completion time %q %q %q", n, f[0], f[4], f[5])
		}
		done := sec*1_000_000 + usec
		l.Done = append(l.Done, done)
		switch f[2] {
		case "failed":
			l.Failed++
		case "skipped":
		default:
			lat, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				return fmt.Errorf("line %d: bad latency %q", n, f[2])
			}
			l.Latencies = append(l.Latencies, lat)
			l.Committed[client]++
			l.LastCommit = max(l.LastCommit, done)
		}
	}
	return sc.Err()
}

// Sort sorts Latencies and Done.
func (l *Log) Sort() {
	slices.Sort(l.Latencies)
	slices.Sort(l.Done)
}

// Read reads every log file pgbench wrote for prefix (one per thread:
// prefix.PID, prefix.PID.1, ...) and returns them merged and sorted.
func Read(prefix string) (*Log, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no pgbench log files %s.*", prefix)
	}
	l := &Log{Committed: map[int]int{}}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		err = l.Parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	l.Sort()
	return l, nil
}

// MaxLatency is the slowest successful transaction (after Sort): the
// longest a client waited for one.
func (l *Log) MaxLatency() time.Duration {
	if len(l.Latencies) == 0 {
		return 0
	}
	return time.Duration(l.Latencies[len(l.Latencies)-1]) * time.Microsecond
}

// LongestGap returns the longest time between two consecutive completions
// in sorted completion times, and when that gap ended (µs since the epoch).
// With many clients, a gap is a time when no client completed anything: a
// stall.
func LongestGap(done []int64) (gap time.Duration, end int64) {
	for i := 1; i < len(done); i++ {
		if d := time.Duration(done[i]-done[i-1]) * time.Microsecond; d > gap {
			gap, end = d, done[i]
		}
	}
	return gap, end
}
