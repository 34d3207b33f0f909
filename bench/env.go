package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// Machine describes where the benchmark ran.
type Machine struct {
	NProc    int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the end:
	// a high load says other work shared the machine.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	// NoFile is the open-file limit the run raised itself to.
	NoFile uint64 `json:"nofile"`
}

// Versions of everything measured.
type Versions struct {
	PostgreSQL string `json:"postgresql"`
	Pgbench    string `json:"pgbench"`
	PgBouncer  string `json:"pgbouncer"`
	Pauseproxy string `json:"pauseproxy"` // git revision it was built from
	Go         string `json:"go"`
	Patroni    string `json:"patroni,omitempty"`
}

func readMachine() Machine {
	m := Machine{NProc: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if n, err := parseStatusKB(b, "MemTotal"); err == nil {
			m.MemTotal = fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
		}
	}
	m.Kernel = readTrim("/proc/sys/kernel/osrelease")
	m.LoadBefore = loadAvg()
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or the
// "Hardware"/"CPU part" line on machines without one.
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	var fallback string
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			return v
		case "Hardware", "CPU part":
			if fallback == "" {
				fallback = v
			}
		}
	}
	if fallback == "" {
		return "unknown"
	}
	return fallback
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// raiseNoFile raises the soft open-file limit to the hard one, so that the
// idle-clients scenario can hold its connections. Children (PgBouncer,
// pauseproxy) inherit it; a credential change keeps rlimits.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Cur, nil
}

// commandOutput runs name args and returns the first line of its output.
func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unavailable (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func readVersions(root string) Versions {
	v := Versions{
		Pgbench:   commandOutput("pgbench", "--version"),
		PgBouncer: commandOutput(pgbouncerBin, "--version"),
		Go:        commandOutput("go", "version"),
	}
	if dir, err := pgtest.BinDir(); err == nil {
		v.PostgreSQL = commandOutput(filepath.Join(dir, "postgres"), "--version")
	} else {
		v.PostgreSQL = "unavailable (" + err.Error() + ")"
	}
	return v
}

// findRepoRoot walks up from the working directory to the go.mod of this
// module.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/pauseproxy/pauseproxy\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the pauseproxy repository (no go.mod of github.com/pauseproxy/pauseproxy above the working directory)")
		}
		dir = parent
	}
}

// gitRevision describes what pauseproxy is built from: the commit, and
// "+uncommitted" when the proxy's own sources (not bench/) differ from it.
func gitRevision(root, rev string) string {
	if rev != "" {
		out, err := gitOut(root, "rev-parse", "--short=12", rev)
		if err != nil {
			return rev
		}
		return out
	}
	head, err := gitOut(root, "rev-parse", "--short=12", "HEAD")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	if st, err := gitOut(root, "status", "--porcelain", "--", "cmd", "internal", "go.mod", "go.sum"); err == nil && st != "" {
		return head + "+uncommitted"
	}
	return head
}

func gitOut(root string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// buildPauseproxy builds cmd/pauseproxy into dir and returns the binary's
// path and the source tree it was built from. With rev empty it builds the
// working tree (what a developer measuring their change wants); otherwise
// it builds that commit from a clean export under dir, so other uncommitted
// work in the checkout does not leak in.
func buildPauseproxy(ctx context.Context, root, rev, version, dir string) (bin, src string, err error) {
	src = root
	if rev != "" {
		src = filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", err
		}
		archive := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev)
		archive.Dir = root
		tar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
		pipe, err := archive.StdoutPipe()
		if err != nil {
			return "", "", err
		}
		tar.Stdin = pipe
		var stderr bytes.Buffer
		archive.Stderr, tar.Stderr = &stderr, &stderr
		if err := tar.Start(); err != nil {
			return "", "", fmt.Errorf("export %s: %w", rev, err)
		}
		if err := archive.Run(); err != nil {
			tar.Wait()
			return "", "", fmt.Errorf("git archive %s: %w: %s", rev, err, stderr.String())
		}
		if err := tar.Wait(); err != nil {
			return "", "", fmt.Errorf("untar %s: %w: %s", rev, err, stderr.String())
		}
	}
	bin = filepath.Join(dir, "bin", "pauseproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X main.version="+version, "-o", bin, "./cmd/pauseproxy")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/pauseproxy in %s: %w\n%s", src, err, out)
	}
	return bin, src, nil
}
