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
// hold_timeout is shorter than an unplanned failover can take (ttl +
// loop_wait + 5s: 16s on patronitest's etcd cluster, 26s on its Consul
// one), through patroni_urls or, with Consul discovery, the members' REST
// API URLs that Consul gives.
func TestHoldTimeoutSizedToPatroni(t *testing.T) {
	for _, store := range []string{patronitest.StoreEtcd, patronitest.StoreConsul} {
		t.Run(store, func(t *testing.T) {
			c := patronitest.Require(t, patronitest.Options{Store: store})
			source := "patroni"
			if store == patronitest.StoreConsul {
				source = "consul"
			}
			var buf proxytest.SyncBuffer
			log := slog.New(slog.NewTextHandler(io.MultiWriter(&buf, tLogWriter{t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
			p := proxytest.Start(t, proxyTOML(patroniDB(c, source), `hold_timeout = "5s"`), proxytest.WithFailover(nil), proxytest.WithLog(log))
			need := time.Duration(c.TTL+c.LoopWait)*time.Second + 5*time.Second
			proxytest.Eventually(t, 30*time.Second, "the hold_timeout warning", func() bool {
				return strings.Contains(buf.String(), "hold_timeout is shorter than an unplanned failover") &&
					strings.Contains(buf.String(), "unplanned_failover="+need.String())
			})
			p.Reload(t, proxyTOML(patroniDB(c, source), `hold_timeout = "60s"`))
			proxytest.Eventually(t, 30*time.Second, "hold_timeout found sufficient after the reload", func() bool {
				return strings.Contains(buf.String(), "hold_timeout covers an unplanned failover")
			})
		})
	}
}

// tLogWriter sends lines to t.Log while the test runs.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	defer func() { recover() }() // a line after the test ended is dropped
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
