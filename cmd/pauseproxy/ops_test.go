package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// runOps runs the command line in-process and returns its exit code and
// output.
func runOps(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// The operator commands against the binary in front of a static database:
// ctl, exec (which needs no Patroni), and the refusals.
func TestOperatorCommands(t *testing.T) {
	path, port, _ := writeAdminConfig(t)
	startBinary(t, path, port)
	target := fmt.Sprintf("127.0.0.1:%d", pg.Port)

	code, out, errs := runOps("ctl", "status", "--config", path)
	if code != 0 || !strings.Contains(out, "postgres") || strings.Count(out, target) != 2 || !strings.Contains(out, " no ") {
		t.Fatalf("ctl status: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := runOps("ctl", "pause", "--config", path, "--database", "postgres", "--expire", "30s"); code != 0 || !strings.Contains(out, "paused postgres on 1 proxies") {
		t.Fatalf("ctl pause: %d %s %s", code, out, errs)
	}
	if rows := mustAdmin(t, port, "SHOW DATABASES"); !strings.Contains(strings.Join(rows, "\n"), "|pause|") {
		t.Fatalf("not paused: %v", rows)
	}
	if code, _, _ := runOps("exec", "--config", path, "--", "true"); code != 1 {
		t.Fatalf("exec over a pause: %d, want 1", code)
	}
	if code, out, errs := runOps("ctl", "resume", "--config", path); code != 0 || !strings.Contains(out, "resumed every database") {
		t.Fatalf("ctl resume: %d %s %s", code, out, errs)
	}

	code, out, errs = runOps("exec", "--config", path, "--", "sh", "-c", "echo maintenance")
	if code != 0 || out != "maintenance\n" || !strings.Contains(errs, "traffic held") {
		t.Fatalf("exec: %d %q\n%s", code, out, errs)
	}
	if code, _, errs := runOps("exec", "--config", path, "--", "sh", "-c", "exit 4"); code != 4 || !strings.Contains(errs, "exited with status 4") {
		t.Fatalf("exec exit 4: %d\n%s", code, errs)
	}
	if rows := mustAdmin(t, port, "SHOW DATABASES"); strings.Contains(strings.Join(rows, "\n"), "|pause|") {
		t.Fatalf("still paused: %v", rows)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"switchover", "--config", path}, 1, "static discovery: a switchover needs patroni or consul"},
		{[]string{"exec", "--config", path, "--database", "nope", "--", "true"}, 1, "has no [databases.nope]"},
		{[]string{"exec", "--config", path}, 2, "usage: pauseproxy exec"},
		{[]string{"switchover", "--config", path, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"ctl"}, 2, "usage: pauseproxy ctl"},
		{[]string{"ctl", "status", "--config", "/nonexistent.toml"}, 1, "nonexistent"},
	} {
		code, _, errs := runOps(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, errs)
		}
	}
	if _, out, _ := runOps("help"); !strings.Contains(out, "pauseproxy switchover") || !strings.Contains(out, "pauseproxy ctl pause|resume|status") {
		t.Fatalf("help: %s", out)
	}
}
