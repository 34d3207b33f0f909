package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestJSONLogs: with log_format = "json" every line the serving process
// writes is one JSON object with time, level and msg; the lifecycle
// events carry their fields.
func TestJSONLogs(t *testing.T) {
	dir := t.TempDir()
	path, port := writeConfig(t, dir, 1)
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body = bytes.Replace(body, []byte("[proxy]\n"), []byte("[proxy]\nlog_format = \"json\"\n"), 1)
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "--allow-root", "--config", path)
	var logs proxytest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	ctx := context.Background()
	proxytest.Eventually(t, 20*time.Second, "pauseproxy to serve", func() bool {
		c, err := pgx.Connect(ctx, dsn(port))
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
		return err == nil
	})
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err // for the deferred wait
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after SIGTERM:\n%s", logs.String())
	}

	msgs := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		n++
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("line %d has no %q: %s", n, k, line)
			}
		}
		msgs[rec["msg"].(string)] = rec
	}
	started, ok := msgs["pauseproxy started"]
	if !ok {
		t.Fatalf("no \"pauseproxy started\" record in:\n%s", logs.String())
	}
	if started["level"] != "INFO" || started["version"] != appVersionOf(t) || started["databases"] != float64(1) {
		t.Errorf("pauseproxy started = %v", started)
	}
	if _, ok := msgs["pauseproxy stopped"]; !ok {
		t.Errorf("no \"pauseproxy stopped\" record in:\n%s", logs.String())
	}
}

// appVersionOf returns the version the test binary reports.
func appVersionOf(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "pauseproxy ")
}
