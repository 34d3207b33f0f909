package ops_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/ops"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// A switchover under TPC-B load through proxy A, both proxies paused: no
// client sees an error, and every transaction pgbench counts is on the new
// primary (none was acknowledged by the old one after its last WAL reached
// the replica).
func TestSwitchoverUnderLoad(t *testing.T) {
	old := waitHealthy(t)
	if out := runPgbench(t, proxyA, "-i", "-q", "-s", "1"); !strings.Contains(out.out, "done") {
		t.Fatalf("pgbench -i: %s", out.out)
	}
	done := make(chan pgbench, 1)
	go func() { done <- runPgbench(t, proxyA, "-c", "8", "-j", "2", "-T", "15", "-n") }()
	time.Sleep(4 * time.Second)

	rep, err := ops.Switchover(context.Background(), ops.SwitchoverOptions{
		Options: ops.Options{Config: proxyA.loadConfig(t), Database: "db", Log: proxytest.Log(t)},
	})
	if err != nil {
		t.Fatalf("switchover: %v\n%s", err, rep.Summary())
	}
	t.Logf("switchover: %s; Patroni: %s", rep.Summary(), rep.PatroniAnswer)
	bench := <-done
	processed := bench.check(t)

	newLeader, err := cluster.Leader(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if newLeader.Name == old.Name {
		t.Fatalf("the leader is still %s", old.Name)
	}
	if !strings.Contains(rep.To, newLeader.PGAddr()) || len(rep.Proxies) != 2 {
		t.Fatalf("report: %+v, new leader %s", rep, newLeader.PGAddr())
	}
	if n := countHistory(t, newLeader); n != processed {
		t.Fatalf("pgbench_history on the new primary has %d rows, pgbench processed %d transactions", n, processed)
	}
	stall := bench.maxLatency(t)
	t.Logf("pgbench: %d transactions, 0 failed; longest transaction %s; traffic held %s", processed, stall, rep.Held)
	if stall > 15*time.Second || rep.Held > 15*time.Second {
		t.Fatalf("stall %s, held %s: too long", stall, rep.Held)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if st := p.state(t); st.Paused || st.Verified != newLeader.PGAddr() {
			t.Fatalf("proxy %s after the switchover: %+v", p.name, st)
		}
	}
}

// The console's SWITCHOVER runs the same pipeline inside the proxy (here
// B, whose discovery is Consul: the lock is Consul's), pausing A through
// its console.
func TestConsoleSwitchover(t *testing.T) {
	old := waitHealthy(t)
	replicas, err := cluster.Replicas(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	target := replicas[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var notices []string
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/pauseproxy?sslmode=disable", adminUser, adminPass, proxyB.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	conn2, err := pgconn.ConnectConfig(ctx, withNotices(t, proxyB.port, &notices))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(context.Background())
	start := time.Now()
	if _, err := conn2.Exec(ctx, "SWITCHOVER db TO "+target.Name).ReadAll(); err != nil {
		t.Fatalf("SWITCHOVER: %v\n%s", err, proxyB.logs.Tail(40))
	}
	t.Logf("SWITCHOVER %s -> %s took %s: %v", old.Name, target.Name, time.Since(start), notices)
	if len(notices) != 1 || !strings.Contains(notices[0], target.PGAddr()) || !strings.Contains(notices[0], "traffic held") {
		t.Fatalf("notices %q", notices)
	}
	if l, err := cluster.Leader(ctx); err != nil || l.Name != target.Name {
		t.Fatalf("leader %v (%v), want %s", l, err, target.Name)
	}
	res, err := conn.Exec(ctx, "SHOW EVENTS").ReadAll()
	if err != nil || !strings.Contains(fmt.Sprint(rowsText(res)), "switchover") {
		t.Fatalf("SHOW EVENTS: %v %v", err, rowsText(res))
	}
	query(t, proxyA, 5*time.Second)
	query(t, proxyB, 5*time.Second)
}

func withNotices(t testing.TB, port int, notices *[]string) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/pauseproxy?sslmode=disable", adminUser, adminPass, port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { *notices = append(*notices, n.Message) }
	return cfg
}

func rowsText(res []*pgconn.Result) [][]string {
	var out [][]string
	for _, r := range res {
		for _, row := range r.Rows {
			var vals []string
			for _, v := range row {
				vals = append(vals, string(v))
			}
			out = append(out, vals)
		}
	}
	return out
}

// A transaction that outlives drain_timeout on proxy B makes B's PAUSE
// fail: the switchover stops at the pause step, both proxies resume (A had
// paused: all or nothing), the primary stays, traffic flows, and the long
// transaction commits.
func TestSwitchoverDrainTimeout(t *testing.T) {
	old := waitHealthy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	long, err := pgx.Connect(ctx, proxyB.dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close(context.Background())
	tx, err := long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	code, stdout, stderr := runBinary(t, "switchover", "--config", proxyA.path, "--database", "db", "--drain-timeout", "1s")
	t.Logf("exit %d in %s\nstdout: %s\nstderr: %s", code, time.Since(start), stdout, stderr)
	if code != 1 || !strings.Contains(stderr, "switchover failed: pause:") || !strings.Contains(stderr, "timed out") {
		t.Fatalf("want exit 1 with the pause step timed out")
	}
	if !strings.Contains(stderr, "undo resume: done") || strings.Contains(stderr, "switchover: start") {
		t.Fatalf("want the pause undone and no switchover requested")
	}
	if l, err := cluster.Leader(ctx); err != nil || l.Name != old.Name {
		t.Fatalf("leader %v (%v), want %s unchanged", l, err, old.Name)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if st := p.state(t); st.Paused {
			t.Fatalf("proxy %s still paused", p.name)
		}
		query(t, p, 3*time.Second)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the long transaction: %v", err)
	}
}

// The checks refuse what Patroni would refuse, before anything is paused.
func TestSwitchoverRefusedByCheck(t *testing.T) {
	waitHealthy(t)
	rep, err := ops.Switchover(context.Background(), ops.SwitchoverOptions{
		Options:   ops.Options{Config: proxyA.loadConfig(t), Database: "db", Log: proxytest.Log(t)},
		Candidate: "nosuchmember",
	})
	var se *ops.StepError
	if !errors.As(err, &se) || se.Step != "check" || !strings.Contains(err.Error(), `no member "nosuchmember"`) {
		t.Fatalf("err %v", err)
	}
	for _, s := range rep.Steps {
		if s.Name == "pause" {
			t.Fatalf("paused after a failed check: %s", rep.Summary())
		}
	}
}

// Patroni's REST API wants credentials (restapi.authentication): a
// switchover without them, or with a wrong password, fails at the check,
// naming the URL and saying why, before any traffic is held; with them
// (proxy B's config) it goes through.
func TestSwitchoverCredentials(t *testing.T) {
	old := waitHealthy(t)
	// Proxy B's config without its patroni_username and patroni_password,
	// beside it (auth_file is relative).
	body, err := os.ReadFile(proxyB.path)
	if err != nil {
		t.Fatal(err)
	}
	noCreds := filepath.Join(filepath.Dir(proxyB.path), "no-api-credentials.toml")
	if err := os.WriteFile(noCreds, regexp.MustCompile(`(?m)^patroni_(username|password) = .*\n`).ReplaceAll(body, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(noCreds) })

	code, stdout, stderr := runBinary(t, "switchover", "--config", noCreds, "--database", "db")
	t.Logf("without credentials: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	want := "pauseproxy switchover failed: check: POST " + old.APIURL + "/switchover: Patroni requires REST API credentials and none were sent: set patroni_username and patroni_password"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("want exit 1 and %q", want)
	}
	if strings.Contains(stderr, "pause: start") {
		t.Fatal("traffic was paused before the credentials were checked")
	}

	cfg := proxyB.loadConfig(t)
	cfg.Databases["db"].PatroniPassword = "wrong-pass"
	rep, err := ops.Switchover(context.Background(), ops.SwitchoverOptions{
		Options: ops.Options{Config: cfg, Database: "db", Log: proxytest.Log(t)},
	})
	var se *ops.StepError
	if !errors.As(err, &se) || se.Step != "check" || !strings.Contains(err.Error(), `Patroni refused the REST API credentials of user "`+apiUser+`"`) {
		t.Fatalf("with a wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") || strings.Contains(rep.Summary(), "pause") {
		t.Fatalf("the error shows the password, or traffic was paused: %v; %s", err, rep.Summary())
	}
	if l, err := cluster.Leader(context.Background()); err != nil || l.Name != old.Name {
		t.Fatalf("leader %v (%v), want %s unchanged", l, err, old.Name)
	}

	// Proxy B's own config: B lists no peers, A is found in Consul.
	code, stdout, stderr = runBinary(t, "switchover", "--config", proxyB.path, "--database", "db")
	if code != 0 {
		t.Fatalf("with credentials: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, fmt.Sprintf("127.0.0.1:%d (consul ", proxyA.port)) || !strings.Contains(stdout, "traffic held") || !strings.Contains(stdout, "on 2 proxies") {
		t.Fatalf("want proxy A, found in Consul, paused too:\nstdout: %s\nstderr: %s", stdout, stderr)
	}
	if l, err := cluster.Leader(context.Background()); err != nil || l.Name == old.Name {
		t.Fatalf("leader %v (%v), want it moved from %s", l, err, old.Name)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		query(t, p, 5*time.Second)
	}
}
