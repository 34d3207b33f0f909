package main

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GoBench is the hot-path Go benchmarks' output: the report embeds their
// allocation figures. The benchmarks themselves live with the code.
type GoBench struct {
	Command    string        `json:"command"`
	Packages   []string      `json:"packages"`
	Benchmarks []GoBenchmark `json:"benchmarks,omitempty"`
	// Status: ok, failed, none (no benchmark exists), skipped.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// GoBenchmark is one line of go test -bench -benchmem output.
type GoBenchmark struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	// Extra holds custom metrics (b.ReportMetric), by unit.
	Extra map[string]float64 `json:"extra,omitempty"`
}

// benchmarkPackages returns the ./internal/... packages that have a
// Benchmark function. Running only those gives the same numbers as
// ./internal/... without starting every package's test cluster.
func benchmarkPackages(root string) ([]string, error) {
	var pkgs []string
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "\nfunc Benchmark") {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			pkg := "./" + filepath.ToSlash(rel)
			if !slices.Contains(pkgs, pkg) {
				pkgs = append(pkgs, pkg)
			}
		}
		return nil
	})
	slices.Sort(pkgs)
	return pkgs, err
}

// goBenchArgs are the go test arguments; benchtime "" is go test's
// default (1s per benchmark).
func goBenchArgs(benchtime string) []string {
	args := []string{"test", "-run", "XXX", "-bench", ".", "-benchmem"}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	return args
}

// goBenchCommand is the command as the report shows it.
func goBenchCommand(benchtime string) string {
	return "go " + strings.Join(goBenchArgs(benchtime), " ") + " ./internal/..."
}

// runGoBench runs the hot-path benchmarks. benchtime "" is go test's
// default (1s per benchmark).
func runGoBench(ctx context.Context, root, benchtime string) GoBench {
	args := goBenchArgs(benchtime)
	gb := GoBench{Command: goBenchCommand(benchtime)}
	pkgs, err := benchmarkPackages(root)
	if err != nil {
		gb.Status, gb.Error = "failed", err.Error()
		return gb
	}
	gb.Packages = pkgs
	if len(pkgs) == 0 {
		gb.Status = "none"
		return gb
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	gb.Benchmarks = parseGoBench(string(out))
	if err != nil {
		gb.Status, gb.Error = "failed", err.Error()+"\n"+tailLines(string(out), 20)
		return gb
	}
	gb.Status = "ok"
	return gb
}

// parseGoBench reads go test -bench output: "pkg: X" lines name the package
// of the Benchmark lines that follow, each "Name-P  N  v unit  v unit ...".
func parseGoBench(out string) []GoBenchmark {
	var (
		res []GoBenchmark
		pkg string
	)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		iters, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		b := GoBenchmark{Package: pkg, Name: f[0], Iterations: iters}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			default:
				if b.Extra == nil {
					b.Extra = map[string]float64{}
				}
				b.Extra[f[i+1]] = v
			}
		}
		res = append(res, b)
	}
	return res
}
