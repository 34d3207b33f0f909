package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pauseproxy/pauseproxy/internal/admin"
)

// holdBuckets are the bounds of hold durations: from a pause that found
// nothing in flight to one left on for minutes.
var holdBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// eventMetrics count what admin.Events reports.
type eventMetrics struct {
	roleChanges  *prometheus.CounterVec
	holdDuration *prometheus.HistogramVec
	pauses       *prometheus.CounterVec
	switchovers  *prometheus.CounterVec
}

func newEventMetrics() *eventMetrics {
	return &eventMetrics{
		roleChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pauseproxy_role_changes_total",
			Help: "Changes of a database's primary that the proxy followed.",
		}, []string{"database"}),
		holdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pauseproxy_hold_duration_seconds",
			Help:    "How long traffic was held, by reason (pause, role-change, ...), measured when the hold ends.",
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
	}
}

func (m *eventMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.roleChanges, m.holdDuration, m.pauses, m.switchovers}
}

// observe is the admin.Events subscription.
func (m *eventMetrics) observe(e admin.Event) {
	switch e.Kind {
	case admin.EventRoleChange:
		m.roleChanges.WithLabelValues(e.Database).Inc()
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
