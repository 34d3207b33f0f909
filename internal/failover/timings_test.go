package failover_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestHoldTimeoutSizedToPatroni: at startup and on reload the manager
// reads Patroni's ttl and loop_wait (GET /config) and warns when
// hold_timeout is shorter than an unplanned failover can take
// (patronitest: ttl 10s + loop_wait 1s + the 5s margin = 16s).
func TestHoldTimeoutSizedToPatroni(t *testing.T) {
	c := patronitest.Require(t, patronitest.Options{})
	var buf proxytest.SyncBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&buf, tLogWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	p := proxytest.Start(t, proxyTOML(patroniDB(c, "patroni"), `hold_timeout = "5s"`), proxytest.WithFailover(nil), proxytest.WithLog(log))
	proxytest.Eventually(t, 20*time.Second, "the hold_timeout warning", func() bool {
		return strings.Contains(buf.String(), "hold_timeout is shorter than an unplanned failover") &&
			strings.Contains(buf.String(), "unplanned_failover=16s")
	})
	p.Reload(t, proxyTOML(patroniDB(c, "patroni"), `hold_timeout = "30s"`))
	proxytest.Eventually(t, 20*time.Second, "hold_timeout found sufficient after the reload", func() bool {
		return strings.Contains(buf.String(), "hold_timeout covers an unplanned failover")
	})
}

// tLogWriter sends lines to t.Log while the test runs.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	defer func() { recover() }() // a line after the test ended is dropped
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
