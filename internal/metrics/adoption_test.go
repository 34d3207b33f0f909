package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/metrics"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// fakeTopology stands for the role-change engine: "appdb" is managed and
// its verified primary is verified ("" none); other databases are static.
type fakeTopology struct{ verified string }

func (f *fakeTopology) Topology(db string) (*discovery.Snapshot, string, time.Time, bool) {
	if db != "appdb" {
		return nil, "", time.Time{}, false
	}
	return &discovery.Snapshot{}, f.verified, time.Time{}, true
}

// The series an SRE alerts on exist from the start at 0, role changes are
// told apart by kind, hold durations by reason, and the primary and the
// limits are exported.
func TestSeriesAnSREExpects(t *testing.T) {
	p := proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 3
max_client_conn = 77

[databases.appdb]
port = %d
dbname = "postgres"

[databases.static]
host = "127.0.0.1"
port = %d
dbname = "postgres"
reserve_pool = 2
max_db_connections = 9
`, pg.Port, pg.Port), proxytest.WithAdmin(proxytest.AdminOptions{}))
	topo := &fakeTopology{}
	reg, err := metrics.NewRegistry(metrics.Options{
		Router: p.Router, Pauser: p.Pauser, Events: p.Events, Topology: topo, Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()

	m := scrape(t, web.URL)
	for _, db := range []string{"appdb", "static"} {
		for _, kind := range []string{"failover", "switchover", "restart"} {
			if got := value(m, "pauseproxy_role_changes_total", "database", db, "kind", kind); got != 0 {
				t.Errorf("role_changes_total{%s,%s} at start = %v, want 0", db, kind, got)
			}
		}
	}
	for _, reason := range []string{"pause", "role-change", "switchover"} {
		if got := histCount(m, "pauseproxy_hold_duration_seconds", "reason", reason); got != 0 {
			t.Errorf("hold_duration_seconds{%s} count at start = %v, want 0", reason, got)
		}
	}
	for _, o := range []string{"paused", "timeout", "cancelled", "interrupted"} {
		if got := value(m, "pauseproxy_pauses_total", "outcome", o); got != 0 {
			t.Errorf("pauses_total{%s} at start = %v, want 0", o, got)
		}
	}
	static := fmt.Sprintf("127.0.0.1:%d", pg.Port)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{name: "pauseproxy_primary_verified", labels: []string{"database", "appdb"}, want: 0},
		{name: "pauseproxy_primary_verified", labels: []string{"database", "static"}, want: -1}, // no discovery: not reported
		{name: "pauseproxy_primary_info", labels: []string{"database", "static", "address", static}, want: 1},
		{name: "pauseproxy_primary_info", labels: []string{"database", "appdb"}, want: -1}, // none verified yet
		{name: "pauseproxy_max_client_conn", want: 77},
		{name: "pauseproxy_reserve_pool_size", labels: []string{"database", "static"}, want: 2},
		{name: "pauseproxy_max_db_connections", labels: []string{"database", "static"}, want: 9},
		{name: "pauseproxy_pool_size", labels: []string{"database", "static"}, want: 3},
	} {
		if got := value(m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The engine verifies a primary.
	topo.verified = "10.0.0.2:5432"
	m = scrape(t, web.URL)
	if got := value(m, "pauseproxy_primary_verified", "database", "appdb"); got != 1 {
		t.Errorf("primary_verified once verified = %v", got)
	}
	if got := value(m, "pauseproxy_primary_info", "database", "appdb", "address", "10.0.0.2:5432"); got != 1 {
		t.Errorf("primary_info{appdb,10.0.0.2:5432} = %v", got)
	}

	// Cycles as the role-change engine reports them (cmd/pauseproxy's
	// roleChanged): a failover, a planned switchover, a restart in place,
	// the first primary found at start and a cycle stopped at shutdown.
	ev := p.Events
	for _, e := range []admin.Event{
		{Database: "appdb", Reason: "role-change", Outcome: "released", From: "a:5432", To: "b:5432", Duration: 2 * time.Second},
		{Database: "appdb", Reason: admin.HoldSwitchover, Outcome: "released", From: "b:5432", To: "a:5432", Duration: time.Second},
		{Database: "appdb", Reason: "role-change", Outcome: "released", From: "a:5432", To: "a:5432", Duration: 3 * time.Second},
		{Database: "appdb", Reason: "role-change", Outcome: "released", From: "", To: "a:5432", Duration: time.Millisecond},
		{Database: "appdb", Reason: "role-change", Outcome: "stopped", From: "a:5432", Duration: time.Millisecond},
	} {
		e.Kind = admin.EventRoleChange
		ev.Add(e)
	}
	m = scrape(t, web.URL)
	for kind, want := range map[string]float64{"failover": 1, "switchover": 1, "restart": 1} {
		if got := value(m, "pauseproxy_role_changes_total", "database", "appdb", "kind", kind); got != want {
			t.Errorf("role_changes_total{appdb,%s} = %v, want %v", kind, got, want)
		}
	}
	if got := histCount(m, "pauseproxy_hold_duration_seconds", "reason", "role-change"); got != 4 {
		t.Errorf("hold_duration_seconds{role-change} count = %v, want 4 (every cycle held traffic)", got)
	}
	if got := histSum(m, "pauseproxy_hold_duration_seconds", "reason", "switchover"); got != 1 {
		t.Errorf("hold_duration_seconds{switchover} sum = %v, want 1", got)
	}
}

// Every ErrorResponse a client gets is counted by SQLSTATE: forwarded from
// the server, made by the proxy, and at login.
func TestClientErrorsBySQLState(t *testing.T) {
	p := proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
hold_timeout = "200ms"

[databases.appdb]
port = %d
dbname = "postgres"
`, pg.Port), proxytest.WithAdmin(proxytest.AdminOptions{}))
	reg, err := metrics.NewRegistry(metrics.Options{Router: p.Router, Pauser: p.Pauser, Events: p.Events, Console: p.Console, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()
	ctx := context.Background()
	dsn := func(db string) string {
		return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
	}
	c, err := pgx.Connect(ctx, dsn("appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range []string{
		"SELEC 1",    // 42601, known
		"SELECT 1/0", // 22012, known
		"SELECT 1/0", // twice
		"DO $$BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'P0004'; END$$", // assert_failure: class P0
	} {
		if _, err := c.Exec(ctx, q); err == nil {
			t.Fatalf("%s: no error", q)
		}
	}
	// The proxy's own: a hold that outlives hold_timeout (57P03).
	if err := p.Pauser.Hold("appdb", "test"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("held past hold_timeout: %v, want 57P03", err)
	}
	p.Pauser.Resume("appdb", "test")
	// Refused at login: an unknown database.
	if c2, err := pgx.Connect(ctx, dsn("nosuchdb")); err == nil {
		c2.Close(ctx)
		t.Fatal("login to an unknown database succeeded")
	}

	// And the admin console's: a user in neither admin_users nor
	// stats_users is refused (42501).
	if adm, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/pgbouncer?sslmode=disable", p.Port)); err == nil {
		adm.Close(ctx)
		t.Fatal("console login of a user without access succeeded")
	}

	m := scrape(t, web.URL)
	for _, c := range []struct {
		db, label string
		want      float64
	}{
		{"pgbouncer", "42501", 1},
		{"appdb", "42601", 1},
		{"appdb", "22012", 2},
		{"appdb", "P0XXX", 1},
		{"appdb", "57P03", 1},
		{"(nodb)", "3D000", 1},
	} {
		if got := value(m, "pauseproxy_client_errors_total", "database", c.db, "sqlstate", c.label); got != c.want {
			t.Errorf("client_errors_total{%s,%s} = %v, want %v", c.db, c.label, got, c.want)
		}
	}
}
