package failover_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// patroniPIDs returns the processes running Patroni for node n (their
// command line names n's configuration file).
func patroniPIDs(t *testing.T, n *patronitest.Node) []int {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(n.ConfigFile)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Fatalf("no Patroni process for %s", n.Name)
	}
	return pids
}

// TestSplitBrainPatroni makes a real split brain: the leader's Patroni is
// frozen (SIGSTOP), so its leader key expires and the replica promotes,
// while the old primary's PostgreSQL runs on, writable. pauseproxy, told of
// the new leader by Patroni's REST API, finds the old primary still
// accepting writes and (on_split_brain = "hold") holds new transactions.
// When the old Patroni wakes up (SIGCONT) one writable node is left: most
// often the promoted one, but Patroni may also hand leadership back to the
// old node and rewind the promoted one (issue 12 saw it do so). Either way
// the held transaction runs on the node left as Patroni's leader, and the
// other node no longer accepts writes.
func TestSplitBrainPatroni(t *testing.T) {
	c := patronitest.Require(t, patronitest.Options{})
	p := startProxy(t, patroniDB(c, "patroni"), `hold_timeout = "120s"`)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	port := func() (int, error) {
		var port int
		err := conn.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port)
		return port, err
	}
	if got, err := port(); err != nil || got != old.PGPort {
		t.Fatalf("before: port %d, %v; want the leader %s", got, err, old.PGAddr())
	}

	pids := patroniPIDs(t, old)
	resume := func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer resume()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("froze Patroni of %s (pids %v); waiting for the leader key to expire (ttl %ds)", old.Name, pids, c.TTL)

	mgr := p.Manager
	proxytest.Eventually(t, 90*time.Second, "the split brain seen by the proxy", func() bool {
		st := mgr.Statuses()["db"]
		return st.SplitBrain && st.SplitBrainNode == old.PGAddr()
	})
	// The old primary really still accepts writes.
	direct, err := pgx.Connect(ctx, c.DSN(old, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "CREATE TABLE split_brain_witness (x int)"); err != nil {
		t.Fatalf("the old primary refused a write: %v", err)
	}
	direct.Close(ctx)

	type result struct {
		port int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		got, err := port()
		done <- result{got, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("a transaction ran during the split brain: %+v", r)
	case <-time.After(2 * time.Second):
	}

	resume()
	t.Logf("woke Patroni of %s up", old.Name)
	r := <-done
	if r.err != nil {
		t.Fatalf("held transaction: %v", r.err)
	}
	if st := mgr.Statuses()["db"]; st.SplitBrain {
		t.Fatalf("still split brain after the release: %+v", st)
	}
	var ran, other *patronitest.Node
	for _, n := range c.Members {
		if n.PGPort == r.port {
			ran = n
		} else if other == nil {
			other = n
		}
	}
	if ran == nil {
		t.Fatalf("held transaction ran on port %d, not a member of the cluster", r.port)
	}
	t.Logf("held transaction ran on %s (the old primary was %s)", ran.Name, old.Name)
	// The node it ran on is the one Patroni settles on as leader, and the
	// other one does not take writes (a replica again, or still restarting).
	proxytest.Eventually(t, 90*time.Second, "Patroni's leader is "+ran.Name, func() bool {
		l, err := c.Leader(ctx)
		return err == nil && l.Name == ran.Name
	})
	if rec, err := c.InRecovery(ctx, other); err == nil && !rec {
		t.Fatalf("%s still accepts writes after the held transaction ran on %s", other.Name, ran.Name)
	}
}
