package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolveVersion(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
		}}
	}
	for _, tc := range []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{name: "stamped wins", stamped: "0.2.0", info: vcs("3f82809aaa1bcdef", "false"), want: "0.2.0"},
		{name: "no build info", want: devVersion},
		{name: "go install of a tag", info: &debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}}, want: "v0.2.0"},
		{name: "checkout", info: vcs("3f82809aaa1bcdef0123", "false"), want: devVersion + "+3f82809aaa1b"},
		{name: "modified checkout", info: vcs("3f82809aaa1bcdef0123", "true"), want: devVersion + "+3f82809aaa1b.dirty"},
		{name: "no vcs", info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, want: devVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveVersion(tc.stamped, tc.info); got != tc.want {
				t.Errorf("resolveVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestReleaseScript runs scripts/release.sh for amd64 only: a static
// binary that reports the version it was given, and a SHA256SUMS that
// matches it.
func TestReleaseScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary")
	}
	dist := t.TempDir()
	const v = "9.9.9-test"
	cmd := exec.Command("bash", "../../scripts/release.sh", v)
	cmd.Env = append(os.Environ(), "DIST="+dist, "ARCHES=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release.sh: %v\n%s", err, out)
	}
	name := "pauseproxy-" + v + "-linux-amd64"
	binary := filepath.Join(dist, name)

	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("machine %v, want x86-64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static (CGO_ENABLED=0 missing?)", name)
		}
	}

	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", name, err)
	}
	if want := "pauseproxy " + v + "\n"; string(out) != want {
		t.Errorf("--version = %q, want %q", out, want)
	}

	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 1 || !strings.HasSuffix(lines[0], "  "+name) {
		t.Fatalf("SHA256SUMS = %q, want one line for %s", sums, name)
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
}
