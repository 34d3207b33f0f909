package deploy

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/metrics"
)

// recorder is a prometheus.Registerer that keeps what is registered, so
// that the test can ask every collector which metrics it describes:
// series that have no value yet (no error sent, no hold ended) exist all
// the same.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.cs = append(r.cs, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// fqName takes the metric name out of a Desc's String().
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registeredNames are the metric names pauseproxy's /metrics can expose:
// its own (metrics.Register) and the Go and process collectors
// (metrics.NewRegistry), with the _bucket, _sum and _count series of each
// histogram.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{}
	if err := metrics.Register(rec, metrics.Options{Events: admin.NewEvents(0)}); err != nil {
		t.Fatal(err)
	}
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	names := map[string]bool{}
	for _, c := range rec.cs {
		ch := make(chan *prometheus.Desc, 256)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	return names
}

// metricInQuery finds metric names in a PromQL expression or a Grafana
// label_values() query.
var metricInQuery = regexp.MustCompile(`\b(?:pauseproxy|process|go)_[A-Za-z0-9_:]+`)

// queries walks the dashboard and returns every query string in it: panel
// targets' expr, variables' queries, annotations' expr.
func queries(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && (k == "expr" || k == "query" || k == "definition") {
				*out = append(*out, s)
				continue
			}
			queries(val, out)
		}
	case []any:
		for _, e := range x {
			queries(e, out)
		}
	}
}

// The Grafana dashboard is valid JSON, every panel has a query and a
// unique id, and every metric it queries is one pauseproxy registers: a
// renamed or removed metric breaks this test, not the operator's
// dashboard.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "pauseproxy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string           `json:"uid"`
		Title  string           `json:"title"`
		Panels []map[string]any `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("deploy/grafana/pauseproxy.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard uid %q, title %q, %d panels", dash.UID, dash.Title, len(dash.Panels))
	}
	ids := map[float64]bool{}
	for _, p := range dash.Panels {
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel %q: id %v used twice", p["title"], id)
		}
		ids[id] = true
		if p["type"] == "row" {
			continue
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no query", p["title"])
		}
		for _, tg := range targets {
			expr, _ := tg.(map[string]any)["expr"].(string)
			if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
				t.Errorf("panel %q: unbalanced expression %s", p["title"], expr)
			}
		}
	}

	var all any
	json.Unmarshal(data, &all)
	var qs []string
	queries(all, &qs)
	names := registeredNames(t)
	used := map[string]bool{}
	for _, q := range qs {
		for _, name := range metricInQuery.FindAllString(q, -1) {
			used[name] = true
			if !names[name] {
				t.Errorf("the dashboard queries %s, which pauseproxy does not register (query: %s)", name, q)
			}
		}
	}
	// The series this issue added are on it.
	for _, name := range []string{"pauseproxy_hold_duration_seconds_bucket", "pauseproxy_role_changes_total",
		"pauseproxy_client_errors_total", "pauseproxy_primary_verified", "pauseproxy_primary_info", "pauseproxy_max_client_conn"} {
		if !used[name] {
			t.Errorf("the dashboard does not show %s", name)
		}
	}
	if len(used) < 20 {
		t.Errorf("only %d metrics found in the dashboard's queries: %v", len(used), slices.Sorted(maps.Keys(used)))
	}
}
