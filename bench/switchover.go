package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
	"github.com/pauseproxy/pauseproxy/internal/pgbenchlog"
)

// SwitchoverResult is a Patroni switchover under TPC-B load through one
// pooler.
type SwitchoverResult struct {
	Target string `json:"target"`
	// Method says how the switchover was driven.
	Method string `json:"method"`
	// Status: ok (0 failed, 0 aborted), failed, not available; for
	// pauseproxy-follow under TPC-B, "in-flight lost" when the only
	// failures are transactions the stopping primary cut (57P01), which
	// no proxy can replay.
	Status string `json:"status"`
	// Workload is the pgbench load: "tpcb" (default) or "select-only".
	Workload string `json:"workload,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Pgbench is the TPC-B run's summary.
	Pgbench PgbenchResult `json:"pgbench"`
	// LongestStallSeconds is the longest time no client completed a
	// transaction, from pgbench's per-transaction log.
	LongestStallSeconds float64 `json:"longest_stall_seconds"`
	// MaxLatencySeconds is the slowest transaction that completed.
	MaxLatencySeconds float64 `json:"max_latency_seconds"`
	// Timeline, in seconds from the start of the switchover: when the
	// candidate first answered pg_is_in_recovery() = false (polled every
	// 10ms), and when the stall ended (the first completion after the
	// longest gap).
	WritableAtSeconds float64 `json:"writable_at_seconds"`
	StallEndAtSeconds float64 `json:"stall_end_at_seconds"`
	// ReleaseAfterWritableSeconds is StallEnd - WritableAt: how long
	// clients waited after the new primary could take writes. Negative
	// when clients were released before the poll saw it writable.
	ReleaseAfterWritableSeconds float64 `json:"release_after_writable_seconds"`
	// CommandSeconds is how long the switchover command or script took.
	CommandSeconds float64 `json:"command_seconds"`
	// Output is the end of the switchover command's output.
	Output string `json:"output,omitempty"`
}

// Switchover targets and how each drives the switchover.
const (
	targetPauseproxyFollow = "pauseproxy-follow"
	// targetPauseproxyFollowS is the same, under select-only autocommit
	// load: the case the safe retry covers.
	targetPauseproxyFollowS = "pauseproxy-follow-select"
	targetPgBouncerScripted = "pgbouncer-scripted"
	methodPauseproxy        = "`pauseproxy switchover --config FILE --database bench`: the proxy drives Patroni"
	methodFollow            = "Patroni switchover through its REST API, as patronictl does; pauseproxy is not told and follows through discovery = \"patroni\" (Debian's Patroni 3.0.2 has no before_stop callback to warn it)"
	methodFollowS           = "as pauseproxy-follow, under `pgbench -S` (autocommit SELECTs): each statement is an implicit transaction, so one the stopping primary refuses (57P01, 57P03, 25006) before answering is run again on the new primary (the safe retry)"
	methodPgBouncer         = "script: PAUSE bench; Patroni switchover (REST API); wait until pg_is_in_recovery() = false on the candidate; re-point [databases] and RELOAD; RESUME bench (the runbook of seeds/000 and seeds/004)"
)

// switchoverAvailable reports whether the pauseproxy binary has a
// switchover command.
func switchoverAvailable(ctx context.Context, bin string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "switchover", "--help").CombinedOutput()
	if bytes.Contains(out, []byte("unknown command")) {
		return false, "this pauseproxy build has no switchover command (`pauseproxy switchover` answers: " + strings.TrimSpace(firstLine(string(out))) + ")"
	}
	return true, ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// switchoverBench runs the switchover scenario: a 2-node Patroni cluster on
// etcd, TPC-B with 16 clients through each pooler, and a switchover a third
// of the way into the run.
type switchoverBench struct {
	log      *slog.Logger
	bin      string // pauseproxy
	tmp      string
	settings PoolSettings
	scale    int
	duration time.Duration
}

func (s *switchoverBench) run(ctx context.Context) []SwitchoverResult {
	ppAvail, ppReason := switchoverAvailable(ctx, s.bin)
	results := []SwitchoverResult{
		{Target: targetPauseproxy, Method: methodPauseproxy},
		{Target: targetPauseproxyFollow, Method: methodFollow},
		{Target: targetPauseproxyFollowS, Method: methodFollowS, Workload: workloadSelect},
		{Target: targetPgBouncerScripted, Method: methodPgBouncer},
	}
	notAvailable := func(i int, why string) {
		results[i].Status, results[i].Reason = "not available", why
	}
	for _, bin := range []string{"/usr/bin/patroni", "/usr/bin/etcd", "/usr/bin/setpriv"} {
		if _, err := os.Stat(bin); err != nil {
			why := bin + " is missing (install Debian packages patroni and etcd-server)"
			for i := range results {
				notAvailable(i, why)
			}
			return results
		}
	}
	if !ppAvail {
		notAvailable(0, ppReason)
	}
	for i := range results {
		if results[i].Workload == "" {
			results[i].Workload = workloadTPCB
		}
	}

	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	s.log.Info("switchover: starting a 2-node Patroni cluster")
	cluster, err := patronitest.Start(startCtx, patronitest.Options{Nodes: 2})
	if err != nil {
		why := "cannot start the Patroni cluster: " + err.Error()
		for i := range results {
			if results[i].Status == "" {
				results[i].Status, results[i].Reason = "failed", why
			}
		}
		return results
	}
	defer cluster.Stop()
	if err := s.prepare(startCtx, cluster); err != nil {
		for i := range results {
			if results[i].Status == "" {
				results[i].Status, results[i].Reason = "failed", "prepare the Patroni cluster: "+err.Error()
			}
		}
		return results
	}
	for i := range results {
		if results[i].Status != "" {
			continue
		}
		s.log.Info("switchover: running", slog.String("target", results[i].Target))
		s.runOne(ctx, cluster, &results[i])
		s.log.Info("switchover: done", slog.String("target", results[i].Target), slog.String("status", results[i].Status),
			slog.Int64("failed", results[i].Pgbench.Failed), slog.Int("aborted", results[i].Pgbench.AbortedClients),
			slog.Float64("stall_s", results[i].LongestStallSeconds), slog.String("reason", results[i].Reason))
	}
	return results
}

// prepare creates the bench role and database on the leader and fills them.
func (s *switchoverBench) prepare(ctx context.Context, c *patronitest.Cluster) error {
	leader, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	if err := c.WaitWritable(ctx, leader); err != nil {
		return err
	}
	conn, err := pgconn.Connect(ctx, c.DSN(leader, "postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", benchUser, benchPassword),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", benchDB, benchUser),
	} {
		if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return pgbenchInit(ctx, leader.PGPort, s.scale)
}

// waitHealthy waits until Patroni shows a running leader and a replica
// that has replayed everything, so that Patroni accepts a switchover
// (maximum_lag_on_failover) and each run starts alike.
func waitHealthy(ctx context.Context, c *patronitest.Cluster) (leader, replica *patronitest.Node, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var why string
	for {
		st, err := c.Status(ctx)
		if err == nil {
			leader, replica, why = healthyPair(c, st)
			if why == "" {
				return leader, replica, nil
			}
		} else {
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("Patroni cluster not healthy: %s", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func healthyPair(c *patronitest.Cluster, st *patronitest.ClusterStatus) (leader, replica *patronitest.Node, why string) {
	for _, m := range st.Members {
		switch {
		case m.Role == "leader" && m.State == "running":
			leader = c.Node(m.Name)
		case m.Role == "replica" && (m.State == "running" || m.State == "streaming"):
			if lag := strings.TrimSpace(string(m.Lag)); lag != "0" {
				return nil, nil, fmt.Sprintf("replica %s lag %s", m.Name, lag)
			}
			replica = c.Node(m.Name)
		}
	}
	if leader == nil || replica == nil {
		return nil, nil, fmt.Sprintf("want a running leader and a running replica, have %+v", st.Members)
	}
	return leader, replica, ""
}

// runOne starts the pooler, runs TPC-B through it, switches over after a
// third of the run, and fills res.
func (s *switchoverBench) runOne(ctx context.Context, c *patronitest.Cluster, res *SwitchoverResult) {
	res.Status = "failed"
	leader, candidate, err := waitHealthy(ctx, c)
	if err != nil {
		res.Reason = err.Error()
		return
	}
	var (
		t        *Target
		cfgPath  string
		switchFn func(context.Context) (string, error)
	)
	patroniDB := fmt.Sprintf("discovery = \"patroni\"\npatroni_urls = [%s]\ndbname = %q\n", quoteList(c.PatroniURLs()), benchDB)
	switch res.Target {
	case targetPauseproxy:
		t, cfgPath, err = startPauseproxy(ctx, s.bin, s.tmp, "pauseproxy-switchover", s.settings, patroniDB, 0)
		switchFn = func(ctx context.Context) (string, error) {
			cmd := exec.CommandContext(ctx, s.bin, "switchover", "--config", cfgPath, "--database", benchDB)
			cmd.Env = clientEnv()
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
	case targetPauseproxyFollow, targetPauseproxyFollowS:
		t, _, err = startPauseproxy(ctx, s.bin, s.tmp, res.Target, s.settings, patroniDB, 0)
		switchFn = func(ctx context.Context) (string, error) {
			return "", c.Switchover(ctx, candidate.Name)
		}
	case targetPgBouncerScripted:
		t, err = startPgBouncer(ctx, s.tmp, "pgbouncer-switchover", s.settings, serverAddr{"127.0.0.1", leader.PGPort})
		switchFn = func(ctx context.Context) (string, error) {
			return s.pgbouncerScript(ctx, c, t, candidate)
		}
	}
	if err != nil {
		res.Reason = "start the pooler: " + err.Error()
		return
	}
	defer t.Proc.Stop()

	logPrefix := filepath.Join(s.tmp, "txlog-switchover-"+res.Target)
	type pgbenchDone struct {
		res PgbenchResult
		out string
		err error
	}
	done := make(chan pgbenchDone, 1)
	go func() {
		args := []string{"-M", "simple", "-c", "16", "-j", "2"}
		if res.Workload == workloadSelect {
			args = append([]string{"-S"}, args...)
		}
		r, out, err := runPgbench(ctx, pgbenchRun{Args: args, Duration: s.duration, Port: t.Port, LogPath: logPrefix})
		done <- pgbenchDone{r, out, err}
	}()

	select {
	case <-time.After(s.duration / 3):
	case <-ctx.Done():
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	writable := make(chan time.Time, 1)
	go watchWritable(watchCtx, c.DSN(candidate, "postgres"), writable)
	t0 := time.Now()
	cmdCtx, cancelCmd := context.WithTimeout(ctx, 2*time.Minute)
	out, cmdErr := switchFn(cmdCtx)
	cancelCmd()
	res.CommandSeconds = time.Since(t0).Seconds()
	res.Output = tailLines(out, 15)

	pb := <-done
	stopWatch()
	var writableAt time.Time
	select {
	case writableAt = <-writable:
	default:
	}
	res.Pgbench = pb.res
	var reasons []string
	if cmdErr != nil {
		reasons = append(reasons, fmt.Sprintf("switchover: %v", cmdErr))
	}
	if pb.err != nil {
		reasons = append(reasons, pb.err.Error())
	}
	if l, err := pgbenchlog.Read(logPrefix); err == nil {
		gap, end := pgbenchlog.LongestGap(l.Done)
		res.LongestStallSeconds = gap.Seconds()
		res.MaxLatencySeconds = l.MaxLatency().Seconds()
		endT := time.UnixMicro(end)
		res.StallEndAtSeconds = endT.Sub(t0).Seconds()
		if !writableAt.IsZero() {
			res.WritableAtSeconds = writableAt.Sub(t0).Seconds()
			res.ReleaseAfterWritableSeconds = endT.Sub(writableAt).Seconds()
		}
	} else {
		reasons = append(reasons, "per-transaction log: "+err.Error())
	}
	if writableAt.IsZero() {
		reasons = append(reasons, "the candidate was never seen writable")
	}
	if pb.res.Failed > 0 || pb.res.AbortedClients > 0 || pb.res.ExitCode != 0 {
		reasons = append(reasons, fmt.Sprintf("pgbench: %d failed transactions, %d aborted clients, exit code %d; %s",
			pb.res.Failed, pb.res.AbortedClients, pb.res.ExitCode, strings.Join(pb.res.Errors, "; ")))
	}
	switch {
	case len(reasons) == 0:
		res.Status = "ok"
	case res.Target == targetPauseproxyFollow && cmdErr == nil && !writableAt.IsZero() && pb.res.Failed == 0 && onlyCutInFlight(pb.res.Errors):
		// Patroni stopped the old primary with transactions open on
		// it: their clients got the server's 57P01, relayed. No pooler
		// can replay half a transaction; pausing first (the other
		// rows) is how to avoid it.
		res.Status = "in-flight lost"
	}
	res.Reason = strings.Join(reasons, "; ")
}

// The switchover workloads.
const (
	workloadTPCB   = "tpcb"
	workloadSelect = "select-only"
)

// onlyCutInFlight reports whether pgbench's errors are all transactions
// that lost their server mid-way (the proxy's relay of 57P01 or of a lost
// connection), nothing refused or misrouted.
func onlyCutInFlight(errs []string) bool {
	if len(errs) == 0 {
		return false
	}
	for _, e := range errs {
		if !strings.Contains(e, "(57P01)") && !strings.Contains(e, "server connection lost during the transaction") {
			return false
		}
	}
	return true
}

// pgbouncerScript is today's runbook, driven through PgBouncer's admin
// console: PAUSE (waits for transactions in flight), switchover, wait for
// the candidate to take writes, re-point the database, RELOAD, RESUME.
func (s *switchoverBench) pgbouncerScript(ctx context.Context, c *patronitest.Cluster, t *Target, candidate *patronitest.Node) (string, error) {
	var log strings.Builder
	step := func(format string, args ...any) {
		fmt.Fprintf(&log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	admin, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgbouncer sslmode=disable", t.Port, benchUser, benchPassword))
	if err != nil {
		return log.String(), fmt.Errorf("admin console: %w", err)
	}
	defer admin.Close(context.Background())
	command := func(sql string) error {
		step("%s", sql)
		_, err := admin.Exec(ctx, sql).ReadAll()
		return err
	}
	if err := command("PAUSE " + benchDB); err != nil {
		return log.String(), err
	}
	// Whatever happens next, clients must not stay paused.
	resumed := false
	defer func() {
		if !resumed {
			admin.Exec(context.Background(), "RESUME "+benchDB).ReadAll()
		}
	}()
	step("Patroni switchover to %s", candidate.Name)
	if err := c.Switchover(ctx, candidate.Name); err != nil {
		return log.String(), err
	}
	step("wait until %s is writable", candidate.Name)
	if err := c.WaitWritable(ctx, candidate); err != nil {
		return log.String(), err
	}
	home := filepath.Join(s.tmp, t.Name)
	ini := pgbouncerINI(home, t.Port, s.settings, serverAddr{"127.0.0.1", candidate.PGPort})
	if err := os.WriteFile(filepath.Join(home, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return log.String(), err
	}
	if err := command("RELOAD"); err != nil {
		return log.String(), err
	}
	err = command("RESUME " + benchDB)
	resumed = err == nil
	step("done")
	return log.String(), err
}

// watchWritable polls dsn with SELECT pg_is_in_recovery() every 10ms and
// sends the first time it answers false.
func watchWritable(ctx context.Context, dsn string, writable chan<- time.Time) {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := pgconn.Connect(ctx, dsn)
			if err == nil {
				conn = c
			}
		}
		if conn != nil {
			rr := conn.ExecParams(ctx, "SELECT pg_is_in_recovery()", nil, nil, nil, nil).Read()
			switch {
			case rr.Err != nil:
				conn.Close(context.Background())
				conn = nil
			case len(rr.Rows) == 1 && string(rr.Rows[0][0]) == "f":
				writable <- time.Now()
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
