package drivers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

const (
	// poolSize is the proxy's default_pool_size: far fewer server
	// connections than clients, so every client's transactions move
	// between server connections all the time.
	poolSize = 3
	// clients is how many concurrent clients each workload runs.
	clients = 30
	// scriptTimeout bounds one run of a workload script. A run takes a
	// few seconds to a few tens of seconds on a busy 2-core machine.
	scriptTimeout = 3 * time.Minute

	// What every workload leaves in its schema (testdata/README.md):
	// insertRows rows per client in items, copyRows per client in copied.
	insertRows = 12
	copyRows   = 500
)

// directEnv, when set to 1, runs the workloads straight against
// PostgreSQL instead of through the proxy.
const directEnv = "PAUSEPROXY_DRIVERS_DIRECT"

// A workload is one driver's script and how to run it.
type workload struct {
	name   string // for messages and the schema name drv_<name>
	script string // under testdata/
	// command checks the driver is installed (failing the test naming the
	// package to install when it is not) and returns the command that
	// runs the script, and extra environment.
	command func(t *testing.T, script string) (argv []string, env []string)
}

func TestPsycopg3(t *testing.T) {
	run(t, workload{name: "psycopg3", script: "psycopg3_workload.py", command: python("psycopg", "python3-psycopg")})
}

func TestPsycopg2(t *testing.T) {
	run(t, workload{name: "psycopg2", script: "psycopg2_workload.py", command: python("psycopg2", "python3-psycopg2")})
}

func TestAsyncpg(t *testing.T) {
	run(t, workload{name: "asyncpg", script: "asyncpg_workload.py", command: python("asyncpg", "python3-asyncpg")})
}

func TestNodePg(t *testing.T) {
	run(t, workload{name: "nodepg", script: "nodepg_workload.js", command: node})
}

func TestPostgresJS(t *testing.T) {
	run(t, workload{name: "postgresjs", script: "postgresjs_workload.js", command: node})
}

func TestPgjdbc(t *testing.T) {
	run(t, workload{name: "pgjdbc", script: "PgjdbcWorkload.java", command: java})
}

// target is where a script connects.
type target struct {
	host string
	port int
}

// run creates the workload's schema, runs its script through a proxy
// (pool of poolSize, transaction mode), and checks what the clients left
// in the tables. When the script fails through the proxy it is run again
// directly against PostgreSQL, so the failure says whether the proxy is
// to blame.
func run(t *testing.T, w workload) {
	argv, env := w.command(t, filepath.Join("testdata", w.script))
	schema := "drv_" + w.name
	direct := target{host: pg.Host, port: pg.Port}

	if os.Getenv(directEnv) == "1" {
		createSchema(t, schema)
		out, err := runScript(t, argv, env, direct, schema)
		if err != nil {
			t.Fatalf("%s directly against PostgreSQL: %v\n%s", w.name, err, out)
		}
		t.Logf("%s directly against PostgreSQL:\n%s", w.name, lastLines(out, 3))
		checkTables(t, schema)
		return
	}

	p := startProxy(t)
	createSchema(t, schema)
	start := time.Now()
	out, err := runScript(t, argv, env, target{host: "127.0.0.1", port: p.Port}, schema)
	if err != nil {
		// Is it the proxy? The same script, straight to PostgreSQL.
		createSchema(t, schema)
		dout, derr := runScript(t, argv, env, direct, schema)
		verdict := "it PASSES directly against PostgreSQL: a proxy bug"
		if derr != nil {
			verdict = fmt.Sprintf("it fails directly against PostgreSQL too (%v): a driver or script problem\n--- direct output:\n%s", derr, dout)
		}
		t.Fatalf("%s through the proxy: %v\n--- output through the proxy:\n%s\n--- %s", w.name, err, out, verdict)
	}
	t.Logf("%s through the proxy (pool %d, %d clients) in %s:\n%s", w.name, poolSize, clients, time.Since(start).Round(time.Millisecond), lastLines(out, 3))
	checkTables(t, schema)
}

// startProxy serves appdb on pg in transaction mode with a pool of
// poolSize until the test ends.
func startProxy(t *testing.T) *proxytest.Proxy {
	t.Helper()
	return proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
auth_type = "scram-sha-256"
auth_file = "{{dir}}/userlist.txt"
pool_mode = "transaction"
default_pool_size = %d
max_client_conn = 500

[databases.appdb]
host = %q
port = %d
`, poolSize, pg.Host, pg.Port), proxytest.WithFile("userlist.txt", `"app" "apppass"`+"\n"))
}

// createSchema (re)creates the workload's schema directly on PostgreSQL:
// items (rows inserted in transactions), wide (read with SELECT * while a
// column is added) and copied (COPY in and out).
func createSchema(t *testing.T, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := connectDirect(t, ctx)
	sql := fmt.Sprintf(`
DROP SCHEMA IF EXISTS %[1]s CASCADE;
CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.items (client int NOT NULL, seq int NOT NULL, val text NOT NULL, PRIMARY KEY (client, seq));
CREATE TABLE %[1]s.wide (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO %[1]s.wide SELECT g, 'w' || g FROM generate_series(1, 5) g;
CREATE TABLE %[1]s.copied (client int NOT NULL, n int NOT NULL, txt text NOT NULL);
`, schema)
	if _, err := c.Exec(ctx, sql).ReadAll(); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
}

func connectDirect(t *testing.T, ctx context.Context) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(ctx, pg.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// checkTables checks, directly on PostgreSQL, what every client must have
// left: its own insertRows committed rows and nothing it rolled back, its
// copyRows copied rows, and the columns added to wide.
func checkTables(t *testing.T, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := connectDirect(t, ctx)
	query := func(sql string) [][]string {
		res := c.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("%s: %v", sql, res.Err)
		}
		rows := make([][]string, len(res.Rows))
		for i, r := range res.Rows {
			for _, v := range r {
				rows[i] = append(rows[i], string(v))
			}
		}
		return rows
	}
	want := func(sql string, expect [][]string) {
		got := query(sql)
		gj, _ := json.Marshal(got)
		ej, _ := json.Marshal(expect)
		if !bytes.Equal(gj, ej) {
			t.Errorf("%s:\n got  %s\n want %s", sql, gj, ej)
		}
	}
	var items, copied [][]string
	for i := 0; i < clients; i++ {
		items = append(items, []string{strconv.Itoa(i), strconv.Itoa(insertRows), "1", strconv.Itoa(insertRows), "t"})
		copied = append(copied, []string{strconv.Itoa(i), strconv.Itoa(copyRows), strconv.Itoa(copyRows * (copyRows + 1) / 2)})
	}
	want(fmt.Sprintf(`SELECT client, count(*), min(seq), max(seq), bool_and(val = format('c%%s-s%%s', client, seq))
		FROM %s.items GROUP BY client ORDER BY client`, schema), items)
	want(fmt.Sprintf(`SELECT client, count(DISTINCT n), sum(n) FROM %s.copied
		WHERE txt = format('c%%s n%%s', client, n) GROUP BY client ORDER BY client`, schema), copied)
	want(fmt.Sprintf(`SELECT count(*) FROM %s.copied`, schema), [][]string{{strconv.Itoa(clients * copyRows)}})
	want(fmt.Sprintf(`SELECT attname FROM pg_attribute WHERE attrelid = '%s.wide'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, schema),
		[][]string{{"id"}, {"name"}, {"extra"}, {"extra2"}})
}

// runScript runs argv with the connection settings in the environment
// (PP_HOST, PP_PORT, PP_USER, PP_PASSWORD, PP_DB, PP_SCHEMA, PP_CLIENTS;
// PP_DIRECT_HOST and PP_DIRECT_PORT are PostgreSQL itself, for the schema
// change made behind the proxy's back) and returns its combined output.
func runScript(t *testing.T, argv, env []string, to target, schema string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env,
		"PP_HOST="+to.host,
		"PP_PORT="+strconv.Itoa(to.port),
		"PP_USER=app",
		"PP_PASSWORD=apppass",
		"PP_DB=appdb",
		"PP_SCHEMA="+schema,
		"PP_CLIENTS="+strconv.Itoa(clients),
		"PP_DIRECT_HOST="+pg.Host,
		"PP_DIRECT_PORT="+strconv.Itoa(pg.Port),
	)
	// Its own process group, so a timeout also ends what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out proxytest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", scriptTimeout, err)
	}
	return out.String(), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// python returns the command of a Python workload needing module, from
// the Debian package pkg. Debian's /usr/bin/python3 comes first: the
// Debian packages install there, whatever python3 comes first in PATH.
func python(module, pkg string) func(*testing.T, string) ([]string, []string) {
	return func(t *testing.T, script string) ([]string, []string) {
		t.Helper()
		py := "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			if py, err = exec.LookPath("python3"); err != nil {
				t.Fatalf("python3 not found: install the Debian package python3 and %s (scripts/install-deps.sh)", pkg)
			}
		}
		out, err := exec.Command(py, "-c", "import "+module).CombinedOutput()
		if err != nil {
			t.Fatalf("the Python module %s is missing for %s: install the Debian package %s (scripts/install-deps.sh): %v\n%s", module, py, pkg, err, out)
		}
		return []string{py, "-u", script}, nil
	}
}

// node returns the command of a Node.js workload, with NODE_PATH at the
// npm packages of testdata/npm-packages.txt (installed if missing).
func node(t *testing.T, script string) ([]string, []string) {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: install the Debian packages nodejs and npm (scripts/install-deps.sh)")
	}
	dir := npmPackages(t)
	return []string{bin, script}, []string{"NODE_PATH=" + filepath.Join(dir, "node_modules")}
}

// npmDir is where the npm packages are installed: PAUSEPROXY_NPM_DIR, or
// $HOME/.cache/pauseproxy/npm (where scripts/install-deps.sh puts them).
func npmDir(t *testing.T) string {
	if d := os.Getenv("PAUSEPROXY_NPM_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		// $HOME unset (a bare CI environment): the user's home from
		// the password database, as install-deps.sh's default.
		u, uerr := user.Current()
		if uerr != nil || u.HomeDir == "" {
			t.Fatalf("no home directory for the npm cache (set PAUSEPROXY_NPM_DIR): %v; %v", err, uerr)
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".cache", "pauseproxy", "npm")
}

// npmPackages makes sure the pinned npm packages are in npmDir, running
// npm install when one is missing or of another version (under a file
// lock: several test binaries may share the directory), and returns it.
func npmPackages(t *testing.T) string {
	t.Helper()
	dir := npmDir(t)
	want := readNpmPackages(t)
	if npmMissing(dir, want) == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("npm cache %s: %v", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("npm cache lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("npm cache lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if npmMissing(dir, want) == nil { // another process installed them
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("the npm packages %s are missing from %s and npm is not installed: install the Debian package npm, or run scripts/install-deps.sh", strings.Join(want, " "), dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"install", "--no-audit", "--no-fund", "--prefix", dir}, want...)
	out, err := exec.CommandContext(ctx, npm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("npm install %s into %s (the npm packages %s, normally installed by scripts/install-deps.sh): %v\n%s",
			strings.Join(want, " "), dir, strings.Join(want, ", "), err, out)
	}
	if err := npmMissing(dir, want); err != nil {
		t.Fatalf("after npm install into %s: %v", dir, err)
	}
	return dir
}

func readNpmPackages(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "npm-packages.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pkgs []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			pkgs = append(pkgs, line)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// npmMissing says which of pkgs (name@version) is not installed under dir
// at its version; nil when all are.
func npmMissing(dir string, pkgs []string) error {
	var errs []error
	for _, p := range pkgs {
		name, version, _ := strings.Cut(p, "@")
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", name, "package.json"))
		if err != nil {
			errs = append(errs, fmt.Errorf("npm package %s: %w", p, err))
			continue
		}
		var meta struct{ Version string }
		if err := json.Unmarshal(b, &meta); err != nil || meta.Version != version {
			errs = append(errs, fmt.Errorf("npm package %s: found version %q", p, meta.Version))
		}
	}
	return errors.Join(errs...)
}

// pgjdbcJar is where Debian's libpostgresql-jdbc-java installs pgjdbc.
const pgjdbcJar = "/usr/share/java/postgresql.jar"

// java compiles the Java workload against pgjdbc and returns the command
// that runs it.
func java(t *testing.T, script string) ([]string, []string) {
	t.Helper()
	javac, err := exec.LookPath("javac")
	if err != nil {
		t.Fatal("javac not found: install the Debian package default-jdk-headless (scripts/install-deps.sh)")
	}
	javaBin, err := exec.LookPath("java")
	if err != nil {
		t.Fatal("java not found: install the Debian package default-jdk-headless (scripts/install-deps.sh)")
	}
	if _, err := os.Stat(pgjdbcJar); err != nil {
		t.Fatalf("pgjdbc is missing (%v): install the Debian package libpostgresql-jdbc-java (scripts/install-deps.sh)", err)
	}
	classes := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, javac, "-cp", pgjdbcJar, "-d", classes, script).CombinedOutput(); err != nil {
		t.Fatalf("javac %s: %v\n%s", script, err, out)
	}
	class := strings.TrimSuffix(filepath.Base(script), ".java")
	return []string{javaBin, "-cp", classes + ":" + pgjdbcJar, class}, nil
}
