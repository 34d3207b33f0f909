package admin_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// stats_users may SHOW and nothing else; other users are refused at
// login, even with auth_type trust.
func TestAccess(t *testing.T) {
	for _, auth := range []string{"md5", "trust"} {
		t.Run(auth, func(t *testing.T) {
			p := startProxy(t, proxyOptions{AuthType: auth})
			stats := console(t, p.Port, statsUser, statsPass)
			for _, cmd := range []string{"SHOW POOLS", "SHOW STATE", "SHOW CONFIG", "SHOW TOPOLOGY", "SHOW EVENTS", "SET client_encoding = 'UTF8'"} {
				if _, err := execSQL(stats, cmd); err != nil {
					t.Errorf("stats user: %s: %v", cmd, err)
				}
			}
			for _, cmd := range []string{"PAUSE", "PAUSE appdb", "RESUME", "KILL appdb", "KILL_CLIENT 1", "RELOAD", "SHUTDOWN",
				"DISABLE appdb", "RECONNECT", "WAIT_CLOSE", "SET default_pool_size = 1", "SWITCHOVER appdb"} {
				_, err := execSQL(stats, cmd)
				if sqlState(err) != "42501" || !strings.Contains(err.Error(), "admin access needed") {
					t.Errorf("stats user: %s: %v, want 42501 admin access needed", cmd, err)
				}
			}
			if p.Pauser.PausedAll() {
				t.Fatal("a stats user's PAUSE paused")
			}
			_, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://plain:plainpass@127.0.0.1:%d/pgbouncer?sslmode=disable", p.Port))
			if sqlState(err) != "42501" || !strings.Contains(err.Error(), "not allowed") {
				t.Fatalf("plain user on the console: %v, want 42501 not allowed", err)
			}
			// The alias works too.
			c, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://admin:adminpass@127.0.0.1:%d/pauseproxy?sslmode=disable&default_query_exec_mode=simple_protocol", p.Port))
			if err != nil {
				t.Fatalf("console as pauseproxy: %v", err)
			}
			c.Close(context.Background())
		})
	}
}

// The extended query protocol gets a clear error and the connection stays
// usable.
func TestExtendedProtocolRefused(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	c, err := pgx.Connect(ctx, p.DSN(adminUser, adminPass, "pgbouncer"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v string
	err = c.QueryRow(ctx, "SHOW VERSION").Scan(&v)
	if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "simple query protocol only") {
		t.Fatalf("extended protocol: %v, want 0A000", err)
	}
	if err := c.QueryRow(ctx, "SHOW VERSION", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil || v != "pauseproxy test" {
		t.Fatalf("simple protocol after the refusal: %q %v", v, err)
	}
}

func TestStatementsAndCase(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	c := console(t, p.Port, adminUser, adminPass)
	res := run(t, c, "show version; sHoW state ;; SELECT lists")
	if len(res) != 3 || res[0].Rows[0][0] != "pauseproxy test" || res[1].Columns[0] != "key" || res[2].Columns[0] != "list" {
		t.Fatalf("three statements: %+v", res)
	}
	// The first error ends the Query, as in PostgreSQL.
	res, err := execSQL(c, "SHOW VERSION; FROB; PAUSE")
	if sqlState(err) != "42601" || len(res) != 1 || p.Pauser.PausedAll() {
		t.Fatalf("error in the middle: %+v %v", res, err)
	}
	// An empty query is answered like PostgreSQL does.
	if _, err := execSQL(c, " ; "); err != nil {
		t.Fatalf("empty query: %v", err)
	}
	// Quoting as in PgBouncer: "identifiers" and 'strings' with doubled quotes.
	if _, err := execSQL(c, `PAUSE "appdb" TIMEOUT '1s'`); err != nil {
		t.Fatal(err)
	}
	if _, err := execSQL(c, `RESUME "appdb"`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"PAUSE appdb TIMEOUT", "PAUSE appdb TIMEOUT 'soon'", "PAUSE appdb EXTRA 1s", "SHOW 'x'", "RESUME a b", "PAUSE pgbouncer", "SET x", "PAUSE 'appdb"} {
		if _, err := execSQL(c, bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestKillDisableReconnect(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	adm := console(t, p.Port, adminUser, adminPass)
	a, b := p.connect(t), p.connect(t)
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}

	// KILL_CLIENT by the id column of SHOW CLIENTS.
	clients := one(t, adm, "SHOW CLIENTS")
	var id string
	for _, row := range clients.Rows {
		if row[1] == "app" && row[len(row)-1] != "<NULL>" {
			id = row[len(row)-1]
			break
		}
	}
	run(t, adm, "KILL_CLIENT "+id)
	killed := 0
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("KILL_CLIENT %s ended %d clients, want 1", id, killed)
	}
	if _, err := execSQL(adm, "KILL_CLIENT 999999"); sqlState(err) != "42704" {
		t.Fatalf("KILL_CLIENT of nobody: %v", err)
	}

	// DISABLE refuses new clients; ENABLE lets them in again.
	run(t, adm, "DISABLE appdb")
	if c, err := pgx.Connect(ctx, p.DSN("app", "apppass", "appdb")); err == nil || !strings.Contains(err.Error(), "disabled") {
		if c != nil {
			c.Close(ctx)
		}
		t.Fatalf("login to a disabled database: %v", err)
	}
	if v, _ := one(t, adm, "SHOW DATABASES").get("appdb", "disabled"); v != "1" {
		t.Fatalf("disabled = %q", v)
	}
	run(t, adm, "ENABLE appdb")
	c := p.connect(t)

	// RECONNECT retires the server connections; WAIT_CLOSE returns once
	// they are gone.
	gen, _ := one(t, adm, "SHOW DATABASES").get("appdb", "generation")
	run(t, adm, "RECONNECT appdb")
	if g, _ := one(t, adm, "SHOW DATABASES").get("appdb", "generation"); g == gen {
		t.Fatalf("generation %s did not move on RECONNECT", g)
	}
	run(t, adm, "WAIT_CLOSE appdb")

	// KILL disconnects every client of the database and pauses it.
	res := run(t, adm, "KILL appdb")
	if res[0].Tag != "KILL" {
		t.Fatalf("KILL: %+v", res)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("client survived KILL")
	}
	if v := pausedDB(t, p); v != "1" {
		t.Fatalf("paused = %s after KILL, want 1", v)
	}
	run(t, adm, "RESUME appdb")
	d := p.connect(t)
	if _, err := d.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after KILL and RESUME: %v", err)
	}
	var cmds []string
	for _, e := range p.Events.List() {
		if e.Kind == "command" {
			cmds = append(cmds, e.Reason)
		}
	}
	for _, want := range []string{"KILL_CLIENT " + id, "DISABLE", "ENABLE", "RECONNECT", "KILL"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("no %s in the event log: %v", want, cmds)
		}
	}
}

func TestSetAndReload(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 5})
	adm := console(t, p.Port, adminUser, adminPass)
	res := run(t, adm, "SET default_pool_size = 7")
	if res[0].Tag != "SET default_pool_size=7" {
		t.Fatalf("tag %q", res[0].Tag)
	}
	if v, _ := one(t, adm, "SHOW CONFIG").get("default_pool_size", "value"); v != "7" {
		t.Fatalf("SHOW CONFIG default_pool_size = %q", v)
	}
	if v, _ := one(t, adm, "SHOW DATABASES").get("appdb", "pool_size"); v != "7" {
		t.Fatalf("appdb pool_size = %q after SET, want 7 (inherited)", v)
	}
	run(t, adm, "SET drain_timeout TO '2.5'")
	if v, _ := one(t, adm, "SHOW CONFIG").get("drain_timeout", "value"); v != "2.5" {
		t.Fatalf("drain_timeout = %q", v)
	}
	for cmd, want := range map[string]string{
		"SET listen_port = 1":           "cannot be changed at run time",
		"SET default_pool_sise = 1":     `did you mean "default_pool_size"`,
		"SET pause_timeout_action = no": `unknown value "no"`,
	} {
		if _, err := execSQL(adm, cmd); sqlState(err) != "22023" || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want 22023 %q", cmd, err, want)
		}
	}
	run(t, adm, "RELOAD")
	if v, _ := one(t, adm, "SHOW DATABASES").get("appdb", "pool_size"); v != "5" {
		t.Fatalf("appdb pool_size = %q after RELOAD, want the file's 5", v)
	}
	// A file that does not validate is refused, and says why.
	os.WriteFile(p.control.path, []byte("[proxy]\nlisten_port = \"x\"\n"), 0o600)
	if _, err := execSQL(adm, "RELOAD"); sqlState(err) != "F0000" || !strings.Contains(err.Error(), "listen_port") {
		t.Fatalf("RELOAD of a bad file: %v", err)
	}
	// SHUTDOWN goes to Control with its mode.
	run(t, adm, "SHUTDOWN WAIT_FOR_CLIENTS")
	run(t, adm, "shutdown")
	// Control hears it once the answer is sent.
	proxytest.Eventually(t, 5*time.Second, "two shutdowns", func() bool {
		p.control.mu.Lock()
		defer p.control.mu.Unlock()
		return slices.Equal(p.control.shutdowns, []string{"WAIT_FOR_CLIENTS", ""})
	})
	if _, err := execSQL(adm, "SUSPEND"); sqlState(err) != "0A000" {
		t.Fatalf("SUSPEND: %v", err)
	}
}

// fakeTopology is a discovery snapshot for SHOW TOPOLOGY.
type fakeTopology struct{}

func (fakeTopology) Topology(db string) (*discovery.Snapshot, string, time.Time, bool) {
	if db != "appdb" {
		return nil, "", time.Time{}, false
	}
	return &discovery.Snapshot{
		Generation: 4, Source: "patroni", Endpoint: "http://10.0.0.1:8008",
		Primary:  &discovery.Member{Name: "pg1", Host: "10.0.0.1", Port: 5432, Role: "primary", State: "running", Timeline: 3, LagBytes: -1},
		Replicas: []discovery.Member{{Name: "pg2", Host: "10.0.0.2", Port: 5432, Role: "replica", State: "streaming", Timeline: 3, LagBytes: 128}},
		Updated:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}, "10.0.0.1:5432", time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), true
}

type fakeSwitchover struct{}

func (fakeSwitchover) Switchover(_ context.Context, db, member string) (string, error) {
	if member == "nobody" {
		return "", errors.New("no such member: nobody")
	}
	return fmt.Sprintf("%s: primary pg1 -> %s in 1.2s, 0 transactions failed", db, member), nil
}

func TestTopologyEventsSwitchover(t *testing.T) {
	t.Run("static", func(t *testing.T) {
		p := startProxy(t, proxyOptions{})
		adm := console(t, p.Port, adminUser, adminPass)
		topo := one(t, adm, "SHOW TOPOLOGY")
		want := fmt.Sprintf("127.0.0.1:%d", pg.Port)
		if v, _ := topo.get("appdb", "primary"); v != want {
			t.Fatalf("static primary %q, want %q (%v)", v, want, topo.Rows)
		}
		if v, _ := topo.get("appdb", "source"); v != "static" {
			t.Fatalf("source %q", v)
		}
		if v, _ := topo.get("appdb", "verified"); v != "<NULL>" {
			t.Fatalf("static verified %q, want NULL", v)
		}
		if _, err := execSQL(adm, "SWITCHOVER"); sqlState(err) != "0A000" || !strings.Contains(err.Error(), "not available") {
			t.Fatalf("SWITCHOVER without an engine: %v", err)
		}
		if _, err := execSQL(adm, "SHOW TOPOLOGY nodb"); sqlState(err) != "3D000" {
			t.Fatalf("SHOW TOPOLOGY nodb: %v", err)
		}
		run(t, adm, "PAUSE appdb")
		run(t, adm, "RESUME appdb")
		ev := one(t, adm, "SHOW EVENTS")
		if !slices.Equal(ev.Columns, []string{"time", "kind", "database", "reason", "duration", "outcome", "detail"}) {
			t.Fatalf("SHOW EVENTS columns %v", ev.Columns)
		}
		if n := countRows(ev, map[string]string{"kind": "pause", "database": "appdb", "outcome": "paused"}); n != 1 {
			t.Fatalf("pause events: %v", ev.Rows)
		}
		if n := countRows(ev, map[string]string{"kind": "resume", "database": "appdb", "outcome": "resumed", "reason": "pause"}); n != 1 {
			t.Fatalf("resume events: %v", ev.Rows)
		}
	})
	t.Run("engine", func(t *testing.T) {
		p := startProxy(t, proxyOptions{Topology: fakeTopology{}, Switchover: fakeSwitchover{}})
		adm := console(t, p.Port, adminUser, adminPass)
		topo := one(t, adm, "SHOW TOPOLOGY appdb")
		for col, want := range map[string]string{
			"source": "patroni", "primary": "pg1", "primary_addr": "10.0.0.1:5432", "timeline": "3",
			"replicas": "pg2 10.0.0.2:5432 streaming lag=128B", "generation": "4", "changing": "0",
			"last_change": "2026-01-02 03:00:00 UTC", "updated": "2026-01-02 03:04:05 UTC",
			"verified": "10.0.0.1:5432",
		} {
			if v, _ := topo.get("appdb", col); v != want {
				t.Errorf("%s = %q, want %q", col, v, want)
			}
		}
		res := run(t, adm, "SWITCHOVER TO pg2")
		if res[0].Tag != "SWITCHOVER" {
			t.Fatalf("SWITCHOVER: %+v", res)
		}
		if _, err := execSQL(adm, "SWITCHOVER appdb TO nobody"); sqlState(err) != "55000" || !strings.Contains(err.Error(), "no such member") {
			t.Fatalf("failed SWITCHOVER: %v", err)
		}
		ev := one(t, adm, "SHOW EVENTS")
		if countRows(ev, map[string]string{"kind": "switchover", "outcome": "ok"}) != 1 || countRows(ev, map[string]string{"kind": "switchover", "outcome": "error: no such member: nobody"}) != 1 {
			t.Fatalf("switchover events: %v", ev.Rows)
		}
	})
}
