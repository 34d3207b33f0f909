package pgbenchlog

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	// testdata/txlog.0 and txlog.0.1 are the two threads' logs of a real
	// pgbench -j 2 -l run, 40 lines each.
	l, err := Read(filepath.Join("testdata", "txlog"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Latencies) != 80 || len(l.Done) != 80 || l.Failed != 0 {
		t.Fatalf("latencies %d done %d failed %d, want 80 80 0", len(l.Latencies), len(l.Done), l.Failed)
	}
	if !slices.IsSorted(l.Latencies) || !slices.IsSorted(l.Done) {
		t.Fatal("not sorted")
	}
	// First line of txlog.0: "0 1 5077 0 1795315567 309147".
	if !slices.Contains(l.Latencies, 5077) || !slices.Contains(l.Done, 1795315567_309147) {
		t.Fatalf("first transaction missing: %v", l.Latencies[:5])
	}
	if l.LastCommit != l.Done[len(l.Done)-1] || l.MaxLatency() != time.Duration(l.Latencies[79])*time.Microsecond {
		t.Fatalf("last commit %d, max latency %s", l.LastCommit, l.MaxLatency())
	}
	total := 0
	for _, n := range l.Committed {
		total += n
	}
	if total != 80 {
		t.Fatalf("committed per client %v, want 80 in all", l.Committed)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("no files: want an error")
	}
}

func TestFailedSkippedAndGaps(t *testing.T) {
	var l Log
	log := strings.Join([]string{
		"0 1 100 0 1000 000000",
		"1 1 failed 0 1000 500000",
		"0 2 300 0 1003 500000", // 3s after the previous completion: the stall
		"1 2 skipped 0 1003 600000",
		"0 3 200 0 1003 700000 0 2", // with schedule_lag and retries
		"",
	}, "\n")
	if err := l.Parse(strings.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	l.Sort()
	if l.Failed != 1 || !slices.Equal(l.Latencies, []float64{100, 200, 300}) || len(l.Done) != 5 {
		t.Fatalf("%+v", l)
	}
	if l.Committed[0] != 3 || l.Committed[1] != 0 || l.LastCommit != 1003_700000 {
		t.Fatalf("committed %v, last commit %d", l.Committed, l.LastCommit)
	}
	gap, end := LongestGap(l.Done)
	if gap != 3*time.Second || end != 1003_500000 {
		t.Fatalf("gap %v end %d", gap, end)
	}
	for _, bad := range []string{"0 1 100", "0 1 x 0 1 2", "0 1 100 0 x 2", "c 1 100 0 1 2"} {
		var l Log
		if err := l.Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
