package metrics

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// holdBuckets are the bounds of hold durations: from a pause that found
// nothing in flight to one left on for minutes.
var holdBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// holdReasons label pauseproxy_hold_duration_seconds; each exists from the
// start, at zero.
var holdReasons = []string{admin.PauseReason, router.HoldRoleChange, admin.HoldSwitchover}

// Kinds of role change (pauseproxy_role_changes_total's kind label).
const (
	// changeFailover: the primary moved to another address without a
	// switchover being announced first (a failover, or a switchover the
	// proxy learnt of only once done).
	changeFailover = "failover"
	// changeSwitchover: the primary moved after the discovery source
	// announced a planned switchover.
	changeSwitchover = "switchover"
	// changeRestart: the cycle ended on the same address: the primary
	// restarted in place (a new postmaster), or its connections failed
	// and it came back.
	changeRestart = "restart"
)

var changeKinds = []string{changeFailover, changeSwitchover, changeRestart}

// Outcomes of pauseproxy_pauses_total and pauseproxy_switchovers_total,
// present from the start.
var (
	pauseOutcomes      = []string{"paused", "timeout", "cancelled", "interrupted"}
	switchoverOutcomes = []string{"ok", "error"}
)

// eventMetrics count what admin.Events reports.
type eventMetrics struct {
	holdDuration *prometheus.HistogramVec
	pauses       *prometheus.CounterVec
	switchovers  *prometheus.CounterVec

	// Role changes are counted here and exported by the collector, so
	// that every database has every kind from the start, at 0 (a counter
	// that appears only at its first increment is invisible to
	// increase()).
	mu      sync.Mutex                   // guards changes
	changes map[string]map[string]uint64 // database -> kind -> count
}

func newEventMetrics() *eventMetrics {
	m := &eventMetrics{
		holdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pauseproxy_hold_duration_seconds",
			Help:    "How long new transactions were held, by reason: pause (PAUSE, SIGUSR1, HTTP), role-change (the primary moved, restarted or failed), switchover (a planned switchover announced by discovery); observed when the hold ends.",
			Buckets: holdBuckets,
		}, []string{"reason"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pauseproxy_pauses_total",
			Help: "PAUSE commands by outcome: paused, timeout (released again), cancelled (stragglers cancelled), interrupted.",
		}, []string{"outcome"}),
		switchovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pauseproxy_switchovers_total",
			Help: "SWITCHOVERs by outcome: ok or error.",
		}, []string{"outcome"}),
		changes: map[string]map[string]uint64{},
	}
	for _, r := range holdReasons {
		m.holdDuration.WithLabelValues(r)
	}
	for _, o := range pauseOutcomes {
		m.pauses.WithLabelValues(o)
	}
	for _, o := range switchoverOutcomes {
		m.switchovers.WithLabelValues(o)
	}
	return m
}

func (m *eventMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.holdDuration, m.pauses, m.switchovers}
}

// observe is the admin.Events subscription.
func (m *eventMetrics) observe(e admin.Event) {
	switch e.Kind {
	case admin.EventRoleChange:
		reason := e.Reason
		if reason == "" {
			reason = router.HoldRoleChange
		}
		m.holdDuration.WithLabelValues(reason).Observe(e.Duration.Seconds())
		if kind := changeKind(e); kind != "" {
			m.mu.Lock()
			if m.changes[e.Database] == nil {
				m.changes[e.Database] = map[string]uint64{}
			}
			m.changes[e.Database][kind]++
			m.mu.Unlock()
		}
	case admin.EventResume, admin.EventHold:
		m.holdDuration.WithLabelValues(e.Reason).Observe(e.Duration.Seconds())
	case admin.EventPause:
		m.pauses.WithLabelValues(e.Outcome).Inc()
	case admin.EventSwitchover:
		outcome := "ok"
		if strings.HasPrefix(e.Outcome, "error") {
			outcome = "error"
		}
		m.switchovers.WithLabelValues(outcome).Inc()
	}
}

// changeKind classifies a finished role-change cycle, or returns "" for
// one that is not a change: stopped before it found a primary, or the
// first primary found at start.
func changeKind(e admin.Event) string {
	switch {
	case e.Outcome != "released" || e.From == "" || e.To == "":
		return ""
	case e.From == e.To:
		return changeRestart
	case e.Reason == admin.HoldSwitchover:
		return changeSwitchover
	}
	return changeFailover
}

// roleChanges returns the count of kind for database db.
func (m *eventMetrics) roleChanges(db, kind string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changes[db][kind]
}
