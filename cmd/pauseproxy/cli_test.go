package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHelpAndVersion: help on stdout with status 0, everywhere it can be
// asked for, and never read as a file name; the version with -V and
// --version.
func TestHelpAndVersion(t *testing.T) {
	var names []string
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	type call struct {
		args []string
		want string // in stdout
	}
	calls := []call{
		{[]string{"-h"}, "usage:"},
		{[]string{"--help"}, "usage:"},
		{[]string{"help"}, "pauseproxy check-config"},
		{[]string{"ctl", "pause", "--help"}, "-expire"},
		{[]string{"ctl", "status", "help"}, "usage: pauseproxy ctl status"},
	}
	for _, name := range names {
		want := "usage: pauseproxy " + name
		if name == "help" {
			want = "usage:\n  pauseproxy FILE.toml"
		}
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {name, "help"}, {"help", name}} {
			calls = append(calls, call{args, want})
		}
	}
	for _, c := range calls {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != 0 || !strings.Contains(out.String(), c.want) || errb.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q (want %q), stderr %q", c.args, code, out.String(), c.want, errb.String())
		}
	}
	// A command's help lists its flags.
	var out, errb bytes.Buffer
	if run([]string{"switchover", "--help"}, &out, &errb); !strings.Contains(out.String(), "-candidate") {
		t.Errorf("switchover --help does not list --candidate:\n%s", out.String())
	}

	for _, args := range [][]string{{"-V"}, {"--version"}, {"version"}, {"--config", "x.toml", "--version"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || out.String() != "pauseproxy "+appVersion()+"\n" {
			t.Errorf("%q: exit %d, %q %q", args, code, out.String(), errb.String())
		}
	}
}

// TestCommandLineMistakes: exit 2 with the problem and the usage on
// stderr, nothing on stdout.
func TestCommandLineMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{[]string{}, "give exactly one configuration"},
		{[]string{"a.toml", "--config", "b.toml"}, "give exactly one configuration"},
		{[]string{"a.toml", "b.toml"}, `unexpected argument "b.toml"`},
		{[]string{"check-config"}, "usage: pauseproxy check-config"},
		{[]string{"check-config", "--bogus", "x.toml"}, "flag provided but not defined: -bogus"},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"version", "x"}, `unexpected argument "x"`},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) || out.Len() != 0 {
			t.Errorf("%q: exit %d, want 2 with %q on stderr; stdout %q, stderr %q", tc.args, code, tc.want, out.String(), errb.String())
		}
	}
}

// TestConfigFileArgument: `pauseproxy FILE` loads a name ending in .ini as
// a pgbouncer.ini and anything else as TOML (the problems show which
// loader read it), as does --pgbouncer-ini.
func TestConfigFileArgument(t *testing.T) {
	dir := t.TempDir()
	body := []byte("[pgbouncer]\nlisten_port = 70000\n")
	ini := filepath.Join(dir, "pgbouncer.ini")
	conf := filepath.Join(dir, "pgbouncer.conf")
	for _, p := range []string{ini, conf} {
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{ini}, "pgbouncer.ini: pgbouncer.listen_port: must be 1..65535"},
		{[]string{"--pgbouncer-ini", ini}, "pgbouncer.ini: pgbouncer.listen_port: must be 1..65535"},
		{[]string{conf}, "pgbouncer.conf: pgbouncer: unknown key"},
		{[]string{"--config", conf}, "pgbouncer.conf: pgbouncer: unknown key"},
		{[]string{filepath.Join(dir, "missing.toml")}, "missing.toml: cannot read"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, want 1 with %q:\n%s", tc.args, code, tc.want, errb.String())
		}
	}
}

// TestCheckConfigNoSecretsExample runs exactly what a CI pipeline runs,
// in the repository root with no secret in the environment:
// `pauseproxy check-config --no-secrets config.example.toml`.
func TestCheckConfigNoSecretsExample(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "../.."
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
	code, out, errs := run("check-config", "--no-secrets", "config.example.toml")
	if code != 0 || out != "config.example.toml: OK (3 databases)\n" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errs)
	}
	if want := "warning: config.example.toml: users.pauseproxy_auth.password_env: environment variable PAUSEPROXY_AUTH_PASSWORD is not set"; !strings.Contains(errs, want) {
		t.Errorf("stderr does not warn %q:\n%s", want, errs)
	}
	// Without the flag the missing variable fails, naming key and file.
	code, _, errs = run("check-config", "config.example.toml")
	if code != 1 || !strings.Contains(errs, "config.example.toml: users.pauseproxy_auth.password_env: environment variable PAUSEPROXY_AUTH_PASSWORD is not set") {
		t.Errorf("without --no-secrets: exit %d:\n%s", code, errs)
	}
	// The flag may follow the file.
	if code, _, errs := run("check-config", "config.example.toml", "--no-secrets"); code != 0 {
		t.Errorf("flag after the file: exit %d:\n%s", code, errs)
	}
}
