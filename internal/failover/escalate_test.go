package failover_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// A database held without a usable primary is logged while it lasts, at
// INFO, then WARN past WarnAfter, then ERROR past hold_timeout, each line
// with how long it has been held; once a primary is verified the lines
// stop.
func TestNoPrimaryLogEscalates(t *testing.T) {
	var logBuf proxytest.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	env := startEngine(t, "1500ms", nil, func(o *failover.Options) {
		o.Log = logger
		o.HoldTimeout = 1500 * time.Millisecond
		o.WarnAfter = 600 * time.Millisecond
		o.NoPrimaryLogInterval = 100 * time.Millisecond
	})
	// The source answers and names no primary; later it names a node
	// where nothing listens (not writable); then a real one.
	env.src.publish(nil, nil)
	noPrimary := func(level string) func() bool {
		return func() bool {
			for _, l := range strings.Split(logBuf.String(), "\n") {
				if strings.Contains(l, "level="+level) && strings.Contains(l, "role change: ") &&
					strings.Contains(l, "yet") && strings.Contains(l, "held=") && strings.Contains(l, "database=db") {
					return true
				}
			}
			return false
		}
	}
	proxytest.Eventually(t, 3*time.Second, "an INFO line", noPrimary("INFO"))
	env.src.publish(deadMember(t), nil)
	proxytest.Eventually(t, 3*time.Second, "a WARN line", noPrimary("WARN"))
	proxytest.Eventually(t, 3*time.Second, "an ERROR line", noPrimary("ERROR"))
	if !strings.Contains(logBuf.String(), "candidate not writable yet") {
		t.Errorf("no line names the candidate that is not writable:\n%s", logBuf.String())
	}
	// Order: no WARN before the first INFO, no ERROR before the first WARN.
	out := logBuf.String()
	info, warn, errl := strings.Index(out, "level=INFO msg=\"role change: no primary"), strings.Index(out, "level=WARN"), strings.Index(out, "level=ERROR")
	if !(info >= 0 && info < warn && warn < errl) {
		t.Errorf("levels out of order (INFO at %d, WARN at %d, ERROR at %d):\n%s", info, warn, errl, out)
	}

	a := memberA()
	env.src.publish(a, nil)
	env.requireReleasedOn(t, a)
	n := strings.Count(logBuf.String(), " yet")
	time.Sleep(300 * time.Millisecond)
	if m := strings.Count(logBuf.String(), " yet"); m != n {
		t.Errorf("still logging after the release (%d lines, then %d)", n, m)
	}
}
