package failover_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// whereAmI runs sql (which must return the server's port and
// pg_is_in_recovery()) on conn.
func whereAmI(ctx context.Context, conn *pgx.Conn, sql string) (port int, recovery bool, err error) {
	err = conn.QueryRow(ctx, sql).Scan(&port, &recovery)
	return port, recovery, err
}

const whereSQL = "SELECT inet_server_port(), pg_is_in_recovery()"

func connectDB(t *testing.T, p *proxytest.Proxy, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app@127.0.0.1:%d/%s?sslmode=disable", p.Port, db))
	if err != nil {
		t.Fatalf("connect %s: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestReadsOnPatroniReplicas runs the read paths against a real Patroni
// cluster (a primary and a streaming replica):
//
//   - a pgbouncer.ini entry pointing at the standby, converted as
//     `pauseproxy convert` does, serves reads at once (target any);
//   - a target_session_attrs = "read-only" database answers from the
//     replica;
//   - with read_only_routing = "replica", BEGIN READ ONLY (and a session
//     with default_transaction_read_only on) lands on the replica while
//     writes go to the primary; with the replica stopped, read-only
//     transactions run on the primary, and once it is back they return
//     to it.
func TestReadsOnPatroniReplicas(t *testing.T) {
	c := patronitest.Require(t, patronitest.Options{})
	ctx := context.Background()
	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) == 0 {
		t.Fatalf("no replica: %v", err)
	}
	replica := replicas[0]

	t.Run("pgbouncer.ini entry on the standby", func(t *testing.T) {
		dir := t.TempDir()
		ini := filepath.Join(dir, "pgbouncer.ini")
		body := fmt.Sprintf(`[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = trust
pool_mode = transaction
[databases]
app_ro = host=127.0.0.1 port=%d dbname=postgres user=%s password=%s
`, replica.PGPort, c.SuperUser, c.SuperPassword)
		if err := os.WriteFile(ini, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.LoadPgBouncerINI(ini)
		if err != nil {
			t.Fatal(err)
		}
		// listen_port 6432 is the default, left out of the TOML.
		toml := strings.Replace(config.ToTOML(cfg), "[proxy]\n", "[proxy]\nlisten_port = {{port}}\n", 1)
		if !strings.Contains(toml, `target_session_attrs = "any"`) {
			t.Fatalf("convert did not carry target_session_attrs = any:\n%s", toml)
		}
		p := proxytest.Start(t, toml, proxytest.WithFailover(nil))
		conn := connectDB(t, p, "app_ro")
		// At once: the first query is answered well before the 30 s a
		// held database would wait.
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		port, recovery, err := whereAmI(qctx, conn, whereSQL)
		if err != nil || port != replica.PGPort || !recovery {
			t.Fatalf("app_ro answered port %d recovery %v (%v), want the standby %d", port, recovery, err, replica.PGPort)
		}
	})

	urls := make([]string, len(c.PatroniURLs()))
	for i, u := range c.PatroniURLs() {
		urls[i] = fmt.Sprintf("%q", u)
	}
	deadPort, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	login := fmt.Sprintf("dbname = \"postgres\"\nuser = %q\npassword = %q\ndiscovery = \"patroni\"\npatroni_urls = [%s]\n",
		c.SuperUser, c.SuperPassword, strings.Join(urls, ", "))
	p := proxytest.Start(t, fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 4
hold_timeout = "30s"

[databases.ro]
target_session_attrs = "read-only"
%[1]s
[databases.app]
read_only_routing = "replica"
%[1]s
[databases.pref]
target_session_attrs = "prefer-standby"
%[1]s
[databases.nowhere]
host = "127.0.0.1"
port = %[2]d
user = "x"

[databases.static_ro]
hosts = [%[3]q, %[4]q]
target_session_attrs = "standby"
max_replica_lag = "30s"
dbname = "postgres"
user = %[5]q
password = %[6]q
`, login, deadPort, leader.PGAddr(), replica.PGAddr(), c.SuperUser, c.SuperPassword), proxytest.WithFailover(nil))

	t.Run("static hosts, roles probed", func(t *testing.T) {
		conn := connectDB(t, p, "static_ro")
		port, recovery, err := whereAmI(ctx, conn, whereSQL)
		if err != nil || port != replica.PGPort || !recovery {
			t.Fatalf("static_ro answered port %d recovery %v (%v), want the replica %d", port, recovery, err, replica.PGPort)
		}
		db, _ := p.Router.Database("static_ro")
		proxytest.Eventually(t, 10*time.Second, "static_ro reads from the replica only", func() bool {
			rs := db.Reads()
			return len(rs.Replicas) == 1 && rs.Replicas[0] == replica.PGAddr()
		})
	})

	t.Run("readiness and topology", func(t *testing.T) {
		web := httptest.NewServer(admin.NewHTTPHandler(admin.HTTPOptions{Router: p.Router, Readiness: p.Manager}))
		defer web.Close()
		get := func(path string) (int, string) {
			resp, err := http.Get(web.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		// One database without a primary does not make the proxy
		// unready while the others serve; it is listed.
		proxytest.Eventually(t, 30*time.Second, "app and ro ready", func() bool {
			a, _ := get("/readyz?database=app")
			r, _ := get("/readyz?database=ro")
			return a == 200 && r == 200
		})
		if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "degraded: database nowhere") {
			t.Fatalf("/readyz: %d %q", code, body)
		}
		for db, want := range map[string]int{"ro": 200, "app": 200, "nowhere": 503, "nosuch": 404} {
			if code, body := get("/readyz?database=" + db); code != want {
				t.Errorf("/readyz?database=%s: %d %q, want %d", db, code, body, want)
			}
		}
		snap, _, _, ok := p.Manager.Topology("ro")
		if !ok || snap == nil || snap.Primary == nil {
			t.Fatalf("topology of ro: %v %+v", ok, snap)
		}
		db, _ := p.Router.Database("ro")
		if rs := db.Reads(); len(rs.Replicas) != 1 || rs.Replicas[0] != replica.PGAddr() {
			t.Fatalf("ro reads from %v, want [%s]", rs.Replicas, replica.PGAddr())
		}
	})

	t.Run("read-only database", func(t *testing.T) {
		for _, name := range []string{"ro", "pref"} {
			conn := connectDB(t, p, name)
			port, recovery, err := whereAmI(ctx, conn, whereSQL)
			if err != nil || port != replica.PGPort || !recovery {
				t.Fatalf("%s answered port %d recovery %v (%v), want the replica %d", name, port, recovery, err, replica.PGPort)
			}
		}
	})

	app := connectDB(t, p, "app")
	// readOnlyOn runs one BEGIN READ ONLY transaction and reports where.
	readOnlyOn := func() (int, bool, error) {
		tx, err := app.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return 0, false, err
		}
		defer tx.Rollback(ctx)
		var port int
		var recovery bool
		if err := tx.QueryRow(ctx, whereSQL).Scan(&port, &recovery); err != nil {
			return 0, false, err
		}
		return port, recovery, tx.Commit(ctx)
	}
	requireReadsOn := func(t *testing.T, want int) {
		t.Helper()
		var port int
		var recovery bool
		var err error
		proxytest.Eventually(t, 30*time.Second, fmt.Sprintf("BEGIN READ ONLY on port %d", want), func() bool {
			port, recovery, err = readOnlyOn()
			return err == nil && port == want
		})
		if recovery != (want == replica.PGPort) {
			t.Fatalf("read-only transaction on %d: pg_is_in_recovery() = %v", port, recovery)
		}
	}
	requireWritesOnPrimary := func(t *testing.T) {
		t.Helper()
		if _, err := app.Exec(ctx, "CREATE TABLE IF NOT EXISTS reads_probe (x int); INSERT INTO reads_probe VALUES (1)"); err != nil {
			t.Fatalf("write through app: %v", err)
		}
		port, recovery, err := whereAmI(ctx, app, whereSQL)
		if err != nil || port != leader.PGPort || recovery {
			t.Fatalf("autocommit answered port %d recovery %v (%v), want the primary %d", port, recovery, err, leader.PGPort)
		}
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var port2 int
		if err := tx.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port2); err != nil || port2 != leader.PGPort {
			t.Fatalf("BEGIN (read write) on port %d (%v), want the primary %d", port2, err, leader.PGPort)
		}
		tx.Rollback(ctx)
	}

	t.Run("read/write split", func(t *testing.T) {
		requireReadsOn(t, replica.PGPort)
		requireWritesOnPrimary(t)
		// default_transaction_read_only on: every transaction is read-only.
		if _, err := app.Exec(ctx, "SET default_transaction_read_only = on"); err != nil {
			t.Fatal(err)
		}
		port, recovery, err := whereAmI(ctx, app, whereSQL)
		if err != nil || port != replica.PGPort || !recovery {
			t.Fatalf("with default_transaction_read_only on: port %d recovery %v (%v), want the replica", port, recovery, err)
		}
		if _, err := app.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
			t.Fatal(err)
		}
		requireWritesOnPrimary(t)

		// A driver that prepares its BEGIN READ ONLY as a named
		// statement: from the second time on only its Bind starts the
		// transaction.
		pc := app.PgConn()
		if _, err := pc.Prepare(ctx, "begin_ro", "BEGIN READ ONLY", nil); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := pc.ExecPrepared(ctx, "begin_ro", nil, nil, nil).Close(); err != nil {
				t.Fatal(err)
			}
			res := pc.ExecParams(ctx, "SELECT inet_server_port()::text", nil, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != fmt.Sprint(replica.PGPort) {
				t.Fatalf("named BEGIN READ ONLY #%d ran on %v (%v), want the replica %d", i+1, res.Rows, res.Err, replica.PGPort)
			}
			if _, err := pc.Exec(ctx, "COMMIT").ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("replica stopped, taken out, put back", func(t *testing.T) {
		ro := connectDB(t, p, "ro")
		if _, _, err := whereAmI(ctx, ro, whereSQL); err != nil {
			t.Fatal(err)
		}
		// Patroni (3.0.2, even paused) starts a stopped replica again
		// within seconds: read-only transactions run all along, none may
		// fail, some must land on the primary while the replica is out,
		// and later ones on the replica again.
		pref := connectDB(t, p, "pref")
		pgctl(t, "stop", "-m", "fast", "-D", replica.DataDir)
		stopped := time.Now()
		var onPrimary, backOnReplica, failed, prefOnPrimary int
		var lastErr error
		for time.Since(stopped) < 90*time.Second && backOnReplica < 5 {
			// prefer-standby: the primary while no replica answers.
			if port, _, err := whereAmI(ctx, pref, whereSQL); err != nil {
				failed++
				lastErr = fmt.Errorf("prefer-standby: %w", err)
			} else if port == leader.PGPort {
				prefOnPrimary++
			}
			port, _, err := readOnlyOn()
			switch {
			case err != nil:
				failed++
				lastErr = err
			case port == leader.PGPort:
				onPrimary++
			case port == replica.PGPort && onPrimary > 0:
				backOnReplica++
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("replica stopped: %d read-only transactions on the primary, then %d back on the replica, %d failed (%v), in %s",
			onPrimary, backOnReplica, failed, lastErr, time.Since(stopped).Round(time.Millisecond))
		t.Logf("prefer-standby: %d queries on the primary", prefOnPrimary)
		if failed > 0 || onPrimary == 0 || backOnReplica == 0 || prefOnPrimary == 0 {
			t.Fatalf("want read-only transactions on the primary while the replica is out, then on the replica, none failed")
		}
		requireWritesOnPrimary(t)
		proxytest.Eventually(t, 30*time.Second, "prefer-standby back on the replica", func() bool {
			port, _, err := whereAmI(ctx, pref, whereSQL)
			return err == nil && port == replica.PGPort
		})
		port, recovery, err := whereAmI(ctx, ro, whereSQL)
		if err != nil || port != replica.PGPort || !recovery {
			t.Fatalf("ro after the replica came back: port %d recovery %v (%v)", port, recovery, err)
		}
	})
}

// pgctl runs pg_ctl as the postgres OS user.
func pgctl(t *testing.T, args ...string) {
	t.Helper()
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pg_ctl"), args...)
	if err := pgtest.RunAsPostgres(cmd); err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_ctl %v: %v\n%s", args, err, out)
	}
}

// pgbenchOn runs pgbench through p against database db with extra
// environment (PGOPTIONS) and returns its output.
func pgbenchOn(p *proxytest.Proxy, db string, env []string, args ...string) string {
	cmd := exec.Command("pgbench", append(args, fmt.Sprintf("host=127.0.0.1 port=%d user=app dbname=%s sslmode=disable", p.Port, db))...)
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// pgbenchUntil runs pgbench with args (a transaction count, not a
// duration) on db again and again until stop is closed, at least once, and
// returns every run's output: load that spans an event however fast or
// slow the machine is.
func pgbenchUntil(p *proxytest.Proxy, db string, env []string, stop <-chan struct{}, args ...string) []string {
	var outs []string
	for {
		outs = append(outs, pgbenchOn(p, db, env, args...))
		select {
		case <-stop:
			return outs
		default:
		}
	}
}

// TestReadsFlowThroughSwitchover runs a Patroni switchover on a 3-node
// cluster under three pgbench runs side by side: select-only on a
// read-only database, select-only on a read-write database whose
// sessions are read-only (default_transaction_read_only on, routed to
// replicas) and TPC-B on that database. Only work bound for the primary
// is held: the read-only clients, served by the replica that stays a
// replica, see no error at all. TPC-B may see the switchover's own
// errors (an explicit transaction cut when the old primary stops, see
// README "A switchover nobody told the proxy about").
func TestReadsFlowThroughSwitchover(t *testing.T) {
	c := patronitest.Require(t, patronitest.Options{Nodes: 3})
	ctx := context.Background()
	urls := make([]string, len(c.PatroniURLs()))
	for i, u := range c.PatroniURLs() {
		urls[i] = fmt.Sprintf("%q", u)
	}
	login := fmt.Sprintf("dbname = \"postgres\"\nuser = %q\npassword = %q\ndiscovery = \"patroni\"\npatroni_urls = [%s]\n",
		c.SuperUser, c.SuperPassword, strings.Join(urls, ", "))
	p := proxytest.Start(t, fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
default_pool_size = 6
hold_timeout = "30s"

[databases.ro]
target_session_attrs = "read-only"
%[1]s
[databases.app]
read_only_routing = "replica"
%[1]s`, login), proxytest.WithFailover(nil))
	if out := pgbenchOn(p, "app", nil, "-i", "-q", "-s", "1"); !strings.Contains(out, "done") {
		t.Fatalf("pgbench -i: %s", out)
	}
	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) < 2 {
		t.Fatalf("want 2 replicas: %v", err)
	}
	// Both databases read from both replicas before the switchover.
	for _, name := range []string{"ro", "app"} {
		db, _ := p.Router.Database(name)
		proxytest.Eventually(t, 30*time.Second, name+" reads from 2 replicas", func() bool { return len(db.Reads().Replicas) == 2 })
	}

	// Reads that ran entirely while app's primary-bound work was held for
	// the role change: the proof that only that work is held.
	appDB, _ := p.Router.Database("app")
	roleChangeHeld := func() bool {
		_, reasons := appDB.Held()
		return slices.Contains(reasons, router.HoldRoleChange)
	}
	var whileHeld atomic.Int64
	stopReads := make(chan struct{})
	readsDone := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app@127.0.0.1:%d/app?sslmode=disable", p.Port))
		if err != nil {
			readsDone <- err
			return
		}
		defer conn.Close(ctx)
		for {
			select {
			case <-stopReads:
				readsDone <- nil
				return
			default:
			}
			before := roleChangeHeld()
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
			if err == nil {
				var n int
				err = tx.QueryRow(ctx, "SELECT count(*) FROM pgbench_branches").Scan(&n)
				tx.Rollback(ctx)
			}
			if err != nil {
				readsDone <- fmt.Errorf("read-only transaction on app: %w", err)
				return
			}
			if before && roleChangeHeld() {
				whileHeld.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	type run struct {
		name string
		outs []string
	}
	done := make(chan run, 3)
	stopLoad := make(chan struct{})
	load := []string{"-c", "4", "-j", "1", "-t", "100", "-n"}
	go func() {
		done <- run{"select-only on ro", pgbenchUntil(p, "ro", nil, stopLoad, append([]string{"-S"}, load...)...)}
	}()
	go func() {
		done <- run{"read-only sessions on app", pgbenchUntil(p, "app", []string{"PGOPTIONS=-c default_transaction_read_only=on"}, stopLoad, append([]string{"-S"}, load...)...)}
	}()
	go func() { done <- run{"TPC-B on app", pgbenchUntil(p, "app", nil, stopLoad, load...)} }()
	time.Sleep(4 * time.Second)
	// New server connections went to the least busy replica: both
	// serve the read-only database.
	roDB, _ := p.Router.Database("ro")
	open := roDB.Reads().Open
	t.Logf("ro's server connections per replica under load: %v", open)
	for _, r := range replicas {
		if open[r.PGAddr()] == 0 {
			t.Errorf("no server connection to replica %s: %v", r.PGAddr(), open)
		}
	}
	if err := c.Switchover(ctx, replicas[0].Name); err != nil {
		t.Fatal(err)
	}
	// The load goes on a little past the switchover, then stops with the
	// runs in progress.
	time.Sleep(2 * time.Second)
	close(stopLoad)
	for range 3 {
		r := <-done
		t.Logf("%s across the switchover: %d runs of pgbench, the last:\n%s", r.name, len(r.outs), r.outs[len(r.outs)-1])
		for _, out := range r.outs {
			if r.name != "TPC-B on app" {
				requireClean(t, out)
			} else if !strings.Contains(out, "number of transactions actually processed") {
				t.Fatalf("TPC-B did not run:\n%s", out)
			}
		}
	}
	close(stopReads)
	if err := <-readsDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d read-only transactions on app ran while its primary was held for the role change", whileHeld.Load())
	if whileHeld.Load() == 0 {
		t.Fatal("no read-only transaction ran while the primary was held: reads were held with it")
	}
	// Writes go to the new primary.
	conn := connectDB(t, p, "app")
	port, recovery, err := whereAmI(ctx, conn, whereSQL)
	if err != nil || port != replicas[0].PGPort || recovery {
		t.Fatalf("after the switchover app writes on port %d (recovery %v, %v), want the new primary %d", port, recovery, err, replicas[0].PGPort)
	}
}

// TestReadsThroughConsul follows a Patroni cluster whose store is Consul
// through Consul: the replica (its `replica` tag and member key) serves a
// read-only database, with its lag computed from the member keys.
func TestReadsThroughConsul(t *testing.T) {
	c := patronitest.Require(t, patronitest.Options{Store: patronitest.StoreConsul})
	ctx := context.Background()
	replicas, err := c.Replicas(ctx)
	if err != nil || len(replicas) == 0 {
		t.Fatalf("no replica: %v", err)
	}
	replica := replicas[0]
	p := proxytest.Start(t, fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"

[databases.ro]
target_session_attrs = "read-only"
max_replica_lag = "16MB"
discovery = "consul"
consul_addr = %q
consul_service = %q
dbname = "postgres"
user = %q
password = %q
`, c.ConsulAddr, c.Scope, c.SuperUser, c.SuperPassword), proxytest.WithFailover(nil))
	conn := connectDB(t, p, "ro")
	port, recovery, err := whereAmI(ctx, conn, whereSQL)
	if err != nil || port != replica.PGPort || !recovery {
		t.Fatalf("ro answered port %d recovery %v (%v), want the replica %d", port, recovery, err, replica.PGPort)
	}
	snap, _, _, ok := p.Manager.Topology("ro")
	if !ok || len(snap.Replicas) != 1 || snap.Replicas[0].LagBytes < 0 {
		t.Fatalf("topology through Consul: %+v", snap)
	}
}
