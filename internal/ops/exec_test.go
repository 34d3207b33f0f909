package ops_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/ops"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// `pauseproxy exec -- patronictl restart` of the primary under TPC-B load
// through proxy B (Consul discovery, so the Consul lock): no client sees
// an error.
func TestExecRestartUnderLoad(t *testing.T) {
	leader := waitHealthy(t)
	if out := runPgbench(t, proxyB, "-i", "-q", "-s", "1"); !strings.Contains(out.out, "done") {
		t.Fatalf("pgbench -i: %s", out.out)
	}
	done := make(chan pgbench, 1)
	go func() { done <- runPgbench(t, proxyB, "-c", "8", "-j", "2", "-T", "15", "-n") }()
	time.Sleep(4 * time.Second)

	start := time.Now()
	code, stdout, stderr := runBinary(t, "exec", "--config", proxyB.path, "--database", "db", "--",
		"patronictl", "-c", leader.ConfigFile, "restart", cluster.Scope, leader.Name, "--force")
	took := time.Since(start)
	t.Logf("exec: exit %d in %s\nstdout: %s\nstderr: %s", code, took, stdout, stderr)
	if code != 0 || !strings.Contains(stdout, "Success: restart on member "+leader.Name) {
		t.Fatalf("exec patronictl restart: exit %d", code)
	}
	if !strings.Contains(stderr, "lock: held") || !strings.Contains(stderr, "consul pauseproxy/"+cluster.Scope+"/switchover") {
		t.Fatalf("exec on a Consul database should take the Consul lock")
	}
	bench := <-done
	processed := bench.check(t)
	t.Logf("pgbench across the restart: %d transactions, 0 failed; longest transaction %s", processed, bench.maxLatency(t))
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if st := p.state(t); st.Paused {
			t.Fatalf("proxy %s still paused", p.name)
		}
	}
}

// A command that fails: traffic resumes and exec exits with its status.
func TestExecFailingCommand(t *testing.T) {
	waitHealthy(t)
	code, _, stderr := runBinary(t, "exec", "--config", proxyA.path, "--", "sh", "-c", "echo doing maintenance >&2; exit 3")
	t.Logf("stderr: %s", stderr)
	if code != 3 || !strings.Contains(stderr, "doing maintenance") || !strings.Contains(stderr, "sh exited with status 3") {
		t.Fatalf("exit %d, want 3", code)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if st := p.state(t); st.Paused {
			t.Fatalf("proxy %s still paused", p.name)
		}
		query(t, p, 3*time.Second)
	}
	// A command that cannot start: 127, as a shell says.
	code, _, _ = runBinary(t, "exec", "--config", proxyA.path, "--", "/nonexistent/command")
	if code != 127 {
		t.Fatalf("exit %d, want 127", code)
	}
	if st := proxyA.state(t); st.Paused {
		t.Fatal("proxy A still paused")
	}
}

// exec in-process, with a command that outlives the timeout: it is
// stopped, and the pauses are undone.
func TestExecTimeout(t *testing.T) {
	waitHealthy(t)
	start := time.Now()
	rep, err := ops.Exec(context.Background(), ops.ExecOptions{
		Options: ops.Options{Config: proxyA.loadConfig(t), Database: "db", Timeout: 2 * time.Second, Log: proxytest.Log(t)},
		Command: []string{"sleep", "30"},
	})
	var se *ops.StepError
	if !errors.As(err, &se) || se.Step != "command" || rep.ExitCode != 128+15 {
		t.Fatalf("err %v, exit %d; want the command step failed by SIGTERM", err, rep.ExitCode)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s", took)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if st := p.state(t); st.Paused {
			t.Fatalf("proxy %s still paused", p.name)
		}
	}
}

// ctl pauses and resumes this proxy and, with --all, its peers, and shows
// their state.
func TestCtl(t *testing.T) {
	waitHealthy(t)
	if code, out, errs := runBinary(t, "ctl", "pause", "--config", proxyA.path, "--database", "db", "--all", "--expire", "60s"); code != 0 || !strings.Contains(out, "paused db on 2 proxies") {
		t.Fatalf("ctl pause: %d %s %s", code, out, errs)
	}
	code, out, _ := runBinary(t, "ctl", "status", "--config", proxyA.path, "--all")
	t.Logf("ctl status:\n%s", out)
	if code != 0 || strings.Count(out, " yes ") != 2 {
		t.Fatalf("ctl status: %d\n%s", code, out)
	}
	// A switchover refuses to run over someone else's pause.
	if code, _, errs := runBinary(t, "switchover", "--config", proxyA.path); code != 1 || !strings.Contains(errs, "paused already") {
		t.Fatalf("switchover over a pause: %d %s", code, errs)
	}
	if code, out, errs := runBinary(t, "ctl", "resume", "--config", proxyA.path, "--all"); code != 0 || !strings.Contains(out, "resumed every database on 2 proxies") {
		t.Fatalf("ctl resume: %d %s %s", code, out, errs)
	}
	for _, p := range []*proxyProc{proxyA, proxyB} {
		if st := p.state(t); st.Paused {
			t.Fatalf("proxy %s still paused", p.name)
		}
	}
	if code, _, _ := runBinary(t, "ctl", "bogus"); code != 2 {
		t.Fatalf("ctl bogus: %d", code)
	}
}

// One switchover or exec per cluster at a time, on both locks: proxy A's
// (a lock file) and proxy B's (Consul). A second command fails at its
// lock step, before it pauses anything.
func TestOneAtATime(t *testing.T) {
	waitHealthy(t)
	for _, p := range []*proxyProc{proxyA, proxyB} {
		t.Run(p.source, func(t *testing.T) {
			var logs proxytest.SyncBuffer
			// Longer than lockWait (2s), which the second one waits for.
			first := exec.Command(bin, "exec", "--config", p.path, "--", "sleep", "4")
			first.Stderr = &logs
			if err := first.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(logs.String(), "lock: held") {
				if time.Now().After(deadline) {
					t.Fatalf("the first exec took no lock:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			_, err := ops.Exec(context.Background(), ops.ExecOptions{
				Options: ops.Options{Config: p.loadConfig(t), Database: "db", Log: proxytest.Log(t)},
				Command: []string{"true"},
			})
			var se *ops.StepError
			if !errors.As(err, &se) || se.Step != "lock" || !errors.Is(err, ops.ErrLocked) || !strings.Contains(err.Error(), "pid ") {
				t.Fatalf("second exec: %v", err)
			}
			t.Logf("second exec: %v", err)
			if err := first.Wait(); err != nil {
				t.Fatalf("first exec: %v\n%s", err, logs.String())
			}
			// Released: the next one runs.
			if _, err := ops.Exec(context.Background(), ops.ExecOptions{
				Options: ops.Options{Config: p.loadConfig(t), Database: "db", Log: proxytest.Log(t)},
				Command: []string{"true"},
			}); err != nil {
				t.Fatalf("exec after the first one ended: %v", err)
			}
		})
	}
}
