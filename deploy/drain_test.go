package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/pgbenchlog"
)

// drainScript is one pgbench transaction: a row naming the client, and a
// client-side pause inside the transaction so that SIGTERM almost surely
// finds transactions in flight.
const drainScript = `BEGIN;
INSERT INTO drain_log (client) VALUES (:client_id);
\sleep 20 ms
COMMIT;
`

// TestSigtermUnderLoadLosesNoCommit is the orchestrators' stop: the kubelet
// (after the preStop sleep) or systemd (`systemctl stop`) sends SIGTERM
// while pgbench runs through the proxy. /readyz must turn 503 at once,
// while a transaction is still open; every transaction pgbench counts as
// committed must be in the database, no more and no fewer, per client;
// transactions in flight at SIGTERM must be let finish; and the proxy must
// exit by itself within shutdown_timeout.
func TestSigtermUnderLoadLosesNoCommit(t *testing.T) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Fatalf("pgbench is needed (Debian postgresql-client-15): %v", err)
	}
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, pg.DSN("postgres", "postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, "TRUNCATE drain_log"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	port, httpPort := freePort(t), freePort(t)
	const shutdownTimeout = 15 * time.Second
	file := filepath.Join(dir, "pauseproxy.toml")
	conf := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
http_listen = "127.0.0.1:%d"
auth_type = "md5"
default_pool_size = 4
shutdown_timeout = "%s"

[databases.postgres]
host = "127.0.0.1"
port = %d

[users.app]
password_env = "APP_DB_PASSWORD"
`, port, httpPort, shutdownTimeout, pg.Port)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	appDSN := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/postgres?sslmode=disable", appPassword, port)
	p := startProxy(t, file, []string{"APP_DB_PASSWORD=" + appPassword}, appDSN)
	web := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	waitStatus(t, web+"/healthz", http.StatusOK)
	waitStatus(t, web+"/readyz", http.StatusOK)

	// A transaction that stays open across SIGTERM, until /readyz has
	// been seen to fail.
	long, err := pgx.Connect(ctx, appDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close(ctx)
	longTx, err := long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := longTx.Exec(ctx, "INSERT INTO drain_log (client) VALUES (-3)"); err != nil {
		t.Fatal(err)
	}

	script := filepath.Join(dir, "drain.sql")
	if err := os.WriteFile(script, []byte(drainScript), 0o644); err != nil {
		t.Fatal(err)
	}
	// 8 clients on 4 server connections: some wait for a connection too.
	bench := exec.Command("pgbench", "-n", "-c", "8", "-j", "2", "-T", "60", "-f", script,
		"--log", "--log-prefix", filepath.Join(dir, "tx"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "app", "postgres")
	bench.Env = append(os.Environ(), "PGPASSWORD="+appPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=5")
	bench.Dir = dir
	var out bytes.Buffer
	bench.Stdout, bench.Stderr = &out, &out
	bench.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan struct{}) // closed when pgbench has exited; then benchErr is set
	var benchErr error
	go func() {
		benchErr = bench.Wait()
		close(benchDone)
	}()
	t.Cleanup(func() {
		bench.Process.Kill()
		<-benchDone
	})

	// Let it commit a few hundred transactions, then stop the proxy.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := direct.QueryRow(ctx, "SELECT count(*) FROM drain_log").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbench committed only %d transactions in 30s\n%s", n, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The kubelet takes the Pod out of its Services on the first failed
	// readiness probe; the open transaction keeps the proxy draining.
	waitStatus(t, web+"/readyz", http.StatusServiceUnavailable)
	if err := longTx.Commit(ctx); err != nil {
		t.Fatalf("commit of a transaction open at SIGTERM: %v", err)
	}

	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("pauseproxy exit: %v, want status 0", p.err)
		}
		if took := time.Since(sigterm); took > shutdownTimeout+2*time.Second {
			t.Errorf("pauseproxy took %v to stop, over shutdown_timeout %v", took, shutdownTimeout)
		}
	case <-time.After(shutdownTimeout + 10*time.Second):
		t.Fatalf("pauseproxy still running %v after SIGTERM", shutdownTimeout+10*time.Second)
	}
	select {
	case <-benchDone:
	case <-time.After(30 * time.Second):
		t.Fatal("pgbench still running 30s after the proxy stopped")
	}
	// pgbench exits 2 when clients were disconnected, which the drain
	// does to idle clients (FATAL 57P01, as a PostgreSQL shutdown).
	var ee *exec.ExitError
	if benchErr != nil && (!errors.As(benchErr, &ee) || ee.ExitCode() != 2) {
		t.Fatalf("pgbench: %v\n%s", benchErr, out.String())
	}

	committed, lastCommit := readPgbenchLogs(t, dir)
	inDB := map[int]int{}
	rows, err := direct.Query(ctx, "SELECT client, count(*) FROM drain_log GROUP BY client")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var client, n int
		if err := rows.Scan(&client, &n); err != nil {
			t.Fatal(err)
		}
		inDB[client] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if inDB[-3] != 1 {
		t.Errorf("the transaction open at SIGTERM is not in the database")
	}
	total := 0
	for client := range 8 {
		total += committed[client]
		if committed[client] != inDB[client] {
			t.Errorf("client %d: pgbench committed %d transactions, the database has %d rows", client, committed[client], inDB[client])
		}
	}
	if m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindStringSubmatch(out.String()); m == nil || m[1] != strconv.Itoa(total) {
		t.Errorf("pgbench's summary does not match its log (%d transactions):\n%s", total, out.String())
	}
	// Transactions in flight at SIGTERM committed after it.
	if !lastCommit.After(sigterm) {
		t.Errorf("no transaction committed after SIGTERM (last at %v, SIGTERM at %v): the drain did not let in-flight transactions finish", lastCommit, sigterm)
	}
	if t.Failed() {
		t.Logf("pgbench output:\n%s", out.String())
	}
	t.Logf("%d transactions committed, the last %v after SIGTERM", total, lastCommit.Sub(sigterm))
}

// waitStatus polls url until it answers status, for up to 10 seconds.
func waitStatus(t *testing.T, url string, status int) {
	t.Helper()
	// No keep-alive: no idle connection goroutine outlives the test.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: want %d, still %v after 10s", url, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readPgbenchLogs reads pgbench's per-transaction logs in dir and returns
// the completed transactions per client and when the last one completed.
func readPgbenchLogs(t *testing.T, dir string) (map[int]int, time.Time) {
	t.Helper()
	l, err := pgbenchlog.Read(filepath.Join(dir, "tx"))
	if err != nil {
		t.Fatal(err)
	}
	return l.Committed, time.UnixMicro(l.LastCommit)
}
