package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/metrics"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

var pg *pgtest.Cluster

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{}, func(c *pgtest.Cluster) { pg = c },
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"))
}

// fakeDiscovery stands for the role-change engine.
type fakeDiscovery struct{}

func (fakeDiscovery) DiscoveryStats() []metrics.DiscoveryStats {
	return []metrics.DiscoveryStats{{Database: "appdb", Errors: 3, Retries: 2, LastSuccess: time.Unix(1700000000, 0), SplitBrain: true}}
}

// The metrics of a known workload: 20 transactions of 2 statements, a
// client held by a PAUSE, a role change reported by the engine.
func TestMetricsOfAWorkload(t *testing.T) {
	p := proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 3

[databases.appdb]
port = %d
dbname = "postgres"
`, pg.Port), proxytest.WithAdmin(proxytest.AdminOptions{}))
	ctx := context.Background()
	r, pauser, events, srv, port := p.Router, p.Pauser, p.Events, p.Server, p.Port
	reg, err := metrics.NewRegistry(metrics.Options{
		Router: r, Pauser: pauser, Events: events, Discovery: fakeDiscovery{}, Clients: srv.Clients, Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()

	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/appdb?sslmode=disable", port)
	a, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	for i := 0; i < 20; i++ {
		if _, err := a.Exec(ctx, "BEGIN; SELECT 1; COMMIT", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
	}
	// A second client waits in a PAUSE.
	b, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if _, err := pauser.Pause(ctx, admin.PauseOptions{Database: "appdb"}); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol)
		held <- err
	}()
	var m map[string]*dto.MetricFamily
	deadline := time.Now().Add(5 * time.Second)
	for {
		m = scrape(t, web.URL)
		if value(m, "pauseproxy_held_clients", "database", "appdb") == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		name         string
		labels       []string
		want         float64
		atLeast      bool
		histogramCnt bool
	}{
		{name: "pauseproxy_held_clients", labels: []string{"database", "appdb"}, want: 1},
		{name: "pauseproxy_paused", labels: []string{"database", "appdb"}, want: 1},
		{name: "pauseproxy_held", labels: []string{"database", "appdb", "reason", "pause"}, want: 1},
		{name: "pauseproxy_paused_all", want: 0},
		{name: "pauseproxy_clients", labels: []string{"database", "appdb", "user", "postgres", "state", "waiting"}, want: 1},
		{name: "pauseproxy_clients", labels: []string{"database", "appdb", "user", "postgres", "state", "idle"}, want: 1},
		{name: "pauseproxy_clients", labels: []string{"database", "appdb", "user", "postgres", "state", "active"}, want: 0},
		{name: "pauseproxy_servers", labels: []string{"database", "appdb", "user", "postgres", "state", "idle"}, want: 1},
		{name: "pauseproxy_servers", labels: []string{"database", "appdb", "user", "postgres", "state", "active"}, want: 0},
		{name: "pauseproxy_transactions_total", labels: []string{"database", "appdb"}, want: 20},
		{name: "pauseproxy_queries_total", labels: []string{"database", "appdb"}, want: 60},
		{name: "pauseproxy_transaction_duration_seconds", labels: []string{"database", "appdb"}, want: 20, histogramCnt: true},
		{name: "pauseproxy_client_wait_seconds", labels: []string{"database", "appdb"}, want: 20, histogramCnt: true},
		{name: "pauseproxy_received_bytes_total", labels: []string{"database", "appdb"}, want: float64(20 * (5 + len("BEGIN; SELECT 1; COMMIT") + 1)), atLeast: true},
		{name: "pauseproxy_sent_bytes_total", labels: []string{"database", "appdb"}, want: 100, atLeast: true},
		{name: "pauseproxy_pool_size", labels: []string{"database", "appdb"}, want: 3},
		{name: "pauseproxy_pauses_total", labels: []string{"outcome", "paused"}, want: 1},
		{name: "pauseproxy_discovery_errors_total", labels: []string{"database", "appdb"}, want: 3},
		{name: "pauseproxy_split_brain", labels: []string{"database", "appdb"}, want: 1},
		{name: "pauseproxy_retries_total", labels: []string{"database", "appdb"}, want: 2},
		{name: "pauseproxy_discovery_last_success_timestamp_seconds", labels: []string{"database", "appdb"}, want: 1700000000},
		{name: "pauseproxy_build_info", labels: []string{"version", "test"}, want: 1},
		{name: "go_goroutines", want: 1, atLeast: true},
		{name: "process_open_fds", want: 1, atLeast: true},
	} {
		var got float64
		if c.histogramCnt {
			got = histCount(m, c.name, c.labels...)
		} else {
			got = value(m, c.name, c.labels...)
		}
		if got != c.want && !(c.atLeast && got >= c.want) {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// RESUME ends the hold: its duration is observed; the client goes on.
	time.Sleep(50 * time.Millisecond)
	if _, err := pauser.Resume("appdb", "test"); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	events.Add(admin.Event{Kind: admin.EventRoleChange, Database: "appdb", Reason: "role-change", Outcome: "released", From: "pg1:5432", To: "pg2:5432", Detail: "pg1 -> pg2"})
	events.Add(admin.Event{Kind: admin.EventHold, Database: "appdb", Reason: "role-change", Duration: 1500 * time.Millisecond})
	m = scrape(t, web.URL)
	if got := value(m, "pauseproxy_paused", "database", "appdb"); got != 0 {
		t.Errorf("paused after RESUME = %v", got)
	}
	if got := value(m, "pauseproxy_role_changes_total", "database", "appdb", "kind", "failover"); got != 1 {
		t.Errorf("role_changes_total = %v", got)
	}
	if got := histCount(m, "pauseproxy_hold_duration_seconds", "reason", "pause"); got != 1 {
		t.Errorf("hold_duration_seconds{reason=pause} count = %v", got)
	}
	if got := histSum(m, "pauseproxy_hold_duration_seconds", "reason", "pause"); got < 0.05 || got > 5 {
		t.Errorf("hold_duration_seconds{reason=pause} sum = %v, want the ~0.05s+ the pause lasted", got)
	}
	if got := histSum(m, "pauseproxy_hold_duration_seconds", "reason", "role-change"); got != 1.5 {
		t.Errorf("hold_duration_seconds{reason=role-change} sum = %v", got)
	}
	if got := value(m, "pauseproxy_transactions_total", "database", "appdb"); got != 21 {
		t.Errorf("transactions_total after the held one = %v, want 21", got)
	}
	// The held transaction waited at least as long as the pause.
	if got := histSum(m, "pauseproxy_client_wait_seconds", "database", "appdb"); got < 0.05 {
		t.Errorf("client_wait_seconds sum = %v, want >= 0.05", got)
	}
}

// scrape fetches and parses /metrics with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := httptestGet(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(resp)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return m
}

// find returns the metric of family name with the given label pairs.
func find(m map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := m[name]
	if f == nil {
		return nil
	}
next:
	for _, metric := range f.Metric {
		have := map[string]string{}
		for _, l := range metric.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		return metric
	}
	return nil
}

// value is a gauge's or counter's value, -1 when missing.
func value(m map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	x := find(m, name, labels...)
	switch {
	case x == nil:
		return -1
	case x.Gauge != nil:
		return x.Gauge.GetValue()
	case x.Counter != nil:
		return x.Counter.GetValue()
	case x.Untyped != nil:
		return x.Untyped.GetValue()
	}
	return -1
}

func histCount(m map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if x := find(m, name, labels...); x != nil && x.Histogram != nil {
		return float64(x.Histogram.GetSampleCount())
	}
	return -1
}

func histSum(m map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	if x := find(m, name, labels...); x != nil && x.Histogram != nil {
		return x.Histogram.GetSampleSum()
	}
	return -1
}

func httptestGet(url string) (io.ReadCloser, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
