package logagg

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// records is a slog.Handler keeping what it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) snapshot() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), r.recs...)
}

func repeated(rec slog.Record) int64 {
	var n int64
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "repeated" {
			n = a.Value.Int64()
		}
		return true
	})
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFloodGivesOneLinePerInterval(t *testing.T) {
	h := &records{}
	a := New(slog.New(h), 200*time.Millisecond)
	defer a.Close()
	for range 10000 {
		a.Log(slog.LevelInfo, "client login timed out", "client login timed out", slog.String("database", "db"))
	}
	if got := len(h.snapshot()); got != 1 {
		t.Fatalf("right after the flood: %d lines, want 1 (the first occurrence)", got)
	}
	eventually(t, "the interval's summary", func() bool { return len(h.snapshot()) == 2 })
	recs := h.snapshot()
	if n := repeated(recs[1]); n != 9999 {
		t.Fatalf("summary says repeated=%d, want 9999", n)
	}
	// A quiet interval forgets the kind: the next occurrence is logged
	// at once, alone.
	time.Sleep(500 * time.Millisecond)
	a.Log(slog.LevelInfo, "client login timed out", "client login timed out")
	if got := len(h.snapshot()); got != 3 || repeated(h.snapshot()[2]) != 0 {
		t.Fatalf("after a quiet interval: %d lines, want 3 with the last one plain", got)
	}
}

func TestKindsCountedApart(t *testing.T) {
	h := &records{}
	a := New(slog.New(h), time.Hour)
	for range 3 {
		a.Log(slog.LevelWarn, "a", "refused a")
		a.Log(slog.LevelWarn, "b", "refused b")
	}
	if got := len(h.snapshot()); got != 2 {
		t.Fatalf("%d lines, want one per kind", got)
	}
	a.Close() // flushes the counts
	recs := h.snapshot()
	if len(recs) != 4 || repeated(recs[2]) != 2 || repeated(recs[3]) != 2 {
		t.Fatalf("after Close: %d lines, want 4 with repeated=2 twice", len(recs))
	}
	a.Close()
	a.Log(slog.LevelWarn, "a", "after close")
	if got := len(h.snapshot()); got != 5 {
		t.Fatalf("after Close a line is logged as it comes; got %d lines", got)
	}
}
