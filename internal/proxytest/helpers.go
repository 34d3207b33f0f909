package proxytest

import (
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Log returns a logger that writes each line to t.Log at level Info.
func Log(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	// A goroutine may log after the test ended, when t.Log panics; the
	// line is dropped.
	defer func() { recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Eventually polls cond every 20ms until it holds, and fails the test
// naming what it waited for when d passes first.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Patterns of pgbench's summary (PostgreSQL 15); submatch 1 is the count.
var (
	PgbenchFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	PgbenchProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
)
