package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PgbenchResult is what one pgbench run printed. pgbench's summary format is
// described in the PostgreSQL 15 docs, "pgbench", section "Typical Output".
type PgbenchResult struct {
	TPS          float64 `json:"tps"`
	Processed    int64   `json:"processed"`
	Failed       int64   `json:"failed"`
	LatencyAvgMs float64 `json:"latency_avg_ms"`
	// AbortedClients counts "client N aborted" errors: pgbench stops a
	// client at its first error other than a serialization or deadlock
	// failure (which it counts as failed transactions instead).
	AbortedClients int `json:"aborted_clients"`
	// Incomplete is set when pgbench said "Run was aborted" (exit code 2).
	Incomplete bool `json:"incomplete,omitempty"`
	ExitCode   int  `json:"exit_code"`
	// Errors are the distinct error lines pgbench printed, at most a few.
	Errors []string `json:"errors,omitempty"`
}

var (
	tpsRE       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	processedRE = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRE    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	latencyRE   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	abortedRE   = regexp.MustCompile(`(?m)client \d+ (?:script \d+ )?aborted`)
	errorLineRE = regexp.MustCompile(`(?m)^(?:pgbench: )?(?:error|fatal): (.*)$`)
)

// maxErrors bounds the error lines kept from one run.
const maxErrors = 3

// parsePgbench reads pgbench's combined stdout and stderr. Missing lines
// leave their fields zero: a run that failed before starting has none.
func parsePgbench(out string) PgbenchResult {
	var r PgbenchResult
	if m := tpsRE.FindStringSubmatch(out); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := processedRE.FindStringSubmatch(out); m != nil {
		r.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := failedRE.FindStringSubmatch(out); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := latencyRE.FindStringSubmatch(out); m != nil {
		r.LatencyAvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	r.AbortedClients = len(abortedRE.FindAllString(out, -1))
	r.Incomplete = strings.Contains(out, "Run was aborted")
	for _, m := range errorLineRE.FindAllStringSubmatch(out, -1) {
		line := strings.TrimSpace(m[1])
		// Keep the server's message, not the client and command numbers,
		// so that 50 clients failing alike give one line.
		if i := strings.Index(line, "ERROR:"); i >= 0 {
			line = line[i:]
		}
		if line == "Run was aborted; the above results are incomplete." || slices.Contains(r.Errors, line) {
			continue
		}
		if len(r.Errors) < maxErrors {
			r.Errors = append(r.Errors, line)
		}
	}
	return r
}

// pgbenchRun is one pgbench invocation against a target.
type pgbenchRun struct {
	Args     []string // scenario options (-S -c 50 ...)
	Duration time.Duration
	Port     int
	LogPath  string // -l --log-prefix, "" for no per-transaction log
}

// runPgbench runs pgbench as the bench user against 127.0.0.1:port and
// returns its parsed summary and its full output. err is set only when
// pgbench could not be run or was killed; a pgbench that ran and reported
// errors returns them in the result, with a nil err.
func runPgbench(ctx context.Context, r pgbenchRun) (PgbenchResult, string, error) {
	args := append(slices.Clone(r.Args),
		"-n", // no vacuum before the run: it would go through the pooler and truncate the history table
		"-T", strconv.Itoa(max(1, int(r.Duration.Round(time.Second)/time.Second))),
		"-h", "127.0.0.1", "-p", strconv.Itoa(r.Port), "-U", benchUser)
	if r.LogPath != "" {
		args = append(args, "-l", "--log-prefix="+r.LogPath)
	}
	args = append(args, benchDB)
	// A stuck run (a pooler that never answers) must not stall the whole
	// benchmark: pgbench gets its duration plus a minute.
	ctx, cancel := context.WithTimeout(ctx, r.Duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	cmd.Env = clientEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := parsePgbench(out.String())
	if ctx.Err() != nil {
		return res, out.String(), fmt.Errorf("pgbench %s: killed after %s: %w", strings.Join(args, " "), r.Duration+time.Minute, ctx.Err())
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return res, out.String(), fmt.Errorf("run pgbench: %w", err)
	}
	if err != nil {
		res.ExitCode = exit.ExitCode()
		if len(res.Errors) == 0 {
			res.Errors = []string{fmt.Sprintf("pgbench exited with %v", err)}
		}
	}
	return res, out.String(), nil
}

// clientEnv is the environment for pgbench and psql: ours without PG*
// variables meant for something else, with the bench user's password.
func clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGPASSWORD="+benchPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
}
