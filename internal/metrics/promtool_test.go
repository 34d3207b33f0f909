package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pauseproxy/pauseproxy/internal/metrics"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestPromtoolCheckMetrics runs Prometheus' own linter (promtool check
// metrics, Debian package prometheus) over a scrape of a proxy that served
// some traffic: names, units, help texts and types as Prometheus expects.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install the Debian package prometheus (scripts/install-deps.sh does)")
	}
	p := proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 2

[databases.appdb]
host = "127.0.0.1"
port = %d
dbname = "postgres"
`, pg.Port), proxytest.WithAdmin(proxytest.AdminOptions{}))
	ctx := context.Background()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/appdb?sslmode=disable", p.Addr))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	c.Exec(ctx, "SELECT 1/0")
	c.Close(ctx)
	reg, err := metrics.NewRegistry(metrics.Options{Router: p.Router, Pauser: p.Pauser, Events: p.Events, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()
	resp, err := http.Get(web.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
