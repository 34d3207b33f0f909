package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// The Patroni callback scripts speak PgBouncer's admin console, which
// pauseproxy keeps command for command. They are tested here against
// pauseproxy's console and against a real PgBouncer (Debian's, which CI
// installs), both in front of the package's PostgreSQL: PAUSE must wait for
// a transaction in flight and hold the next one, RESUME must release it.

func TestPatroniSnippet(t *testing.T) {
	dir := filepath.Join(repoRoot, "deploy", "patroni")
	data, err := os.ReadFile(filepath.Join(dir, "patroni.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var snippet struct {
		PostgreSQL struct {
			BeforeStop string            `yaml:"before_stop"`
			Callbacks  map[string]string `yaml:"callbacks"`
		} `yaml:"postgresql"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&snippet); err != nil {
		t.Fatalf("patroni.yml: %v", err)
	}
	pg := snippet.PostgreSQL
	if filepath.Base(pg.BeforeStop) != "pauseproxy-pause.sh" {
		t.Errorf("postgresql.before_stop = %q, want .../pauseproxy-pause.sh", pg.BeforeStop)
	}
	// Patroni's callback names (docs: YAML configuration, postgresql.callbacks).
	known := []string{"on_reload", "on_restart", "on_role_change", "on_start", "on_stop"}
	for _, name := range []string{"on_role_change", "on_restart", "on_start"} {
		if filepath.Base(pg.Callbacks[name]) != "pauseproxy-resume.sh" {
			t.Errorf("postgresql.callbacks.%s = %q, want .../pauseproxy-resume.sh", name, pg.Callbacks[name])
		}
	}
	for name := range pg.Callbacks {
		if !slices.Contains(known, name) {
			t.Errorf("postgresql.callbacks.%s: Patroni has no such callback", name)
		}
	}
	for _, script := range []string{"pauseproxy-pause.sh", "pauseproxy-resume.sh"} {
		file := filepath.Join(dir, script)
		st, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", script)
		}
		if out, err := exec.Command("bash", "-n", file).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", script, err, out)
		}
	}
}

// pgbouncer runs Debian's PgBouncer, as the postgres OS user (it refuses
// root), in front of the package's cluster: database postgres, admin user
// admin.
func startPgBouncer(t *testing.T) (port int) {
	t.Helper()
	exe, err := exec.LookPath("pgbouncer")
	if err != nil {
		t.Fatalf("pgbouncer is needed (Debian package pgbouncer): %v", err)
	}
	dir := t.TempDir()
	port = freePort(t)
	ini := fmt.Sprintf(`[databases]
postgres = host=127.0.0.1 port=%d dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = md5
auth_file = %s
admin_users = admin
pool_mode = transaction
default_pool_size = 2
`, pg.Port, port, filepath.Join(dir, "userlist.txt"))
	files := map[string]string{
		"pgbouncer.ini": ini,
		"userlist.txt":  fmt.Sprintf("\"admin\" \"admin-pw\"\n\"app\" %q\n", appPassword),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgtest.ChownPostgres(dir); err != nil {
		t.Fatal(err)
	}
	// The temporary directory's parents must let the postgres user in.
	os.Chmod(filepath.Dir(dir), 0o755)
	cmd := exec.Command(exe, filepath.Join(dir, "pgbouncer.ini"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := pgtest.RunAsPostgres(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("pgbouncer log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgconn.Connect(context.Background(), adminDSN(port))
		if err == nil {
			c.Close(context.Background())
			return port
		}
		select {
		case <-done:
			t.Fatalf("pgbouncer exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer does not accept connections: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func adminDSN(port int) string {
	return fmt.Sprintf("postgresql://admin:admin-pw@127.0.0.1:%d/pgbouncer?sslmode=disable", port)
}

// paused reports PgBouncer's paused flag for database postgres (SHOW
// DATABASES, column paused).
func paused(t *testing.T, port int) bool {
	t.Helper()
	ctx := context.Background()
	c, err := pgconn.Connect(ctx, adminDSN(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	res, err := c.Exec(ctx, "SHOW DATABASES").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, f := range res[0].FieldDescriptions {
		if f.Name == "paused" {
			col = i
		}
	}
	if col < 0 {
		t.Fatal("SHOW DATABASES has no paused column")
	}
	for _, row := range res[0].Rows {
		if string(row[0]) == "postgres" {
			switch v := string(row[col]); v {
			case "1", "t", "true":
				return true
			case "0", "f", "false":
				return false
			default:
				t.Fatalf("SHOW DATABASES paused = %q", v)
			}
		}
	}
	t.Fatal("SHOW DATABASES has no database postgres")
	return false
}

// runScript runs a callback script with the settings in env (and nothing
// from a callbacks file).
func runScript(t *testing.T, script string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "deploy", "patroni", script), args...)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"PAUSEPROXY_CALLBACK_CONF=/nonexistent",
	}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startPauseproxyConsole runs the binary with an admin user in front of the
// package's cluster and returns its port.
func startPauseproxyConsole(t *testing.T) int {
	t.Helper()
	port := freePort(t)
	file := filepath.Join(t.TempDir(), "pauseproxy.toml")
	conf := fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "md5"
admin_users = ["admin"]

[databases.postgres]
host = "127.0.0.1"
port = %d

[users.admin]
password = "admin-pw"

[users.app]
password_env = "APP_DB_PASSWORD"
`, port, pg.Port)
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProxy(t, file, []string{"APP_DB_PASSWORD=" + appPassword}, adminDSN(port))
	return port
}

func TestPatroniCallbacks(t *testing.T) {
	for _, console := range []struct {
		name         string
		start        func(*testing.T) int
		pauseOptions string // PAUSEPROXY_PAUSE_OPTIONS
	}{
		{name: "pauseproxy", start: startPauseproxyConsole, pauseOptions: "EXPIRE '60s'"},
		{name: "pgbouncer", start: startPgBouncer},
	} {
		t.Run(console.name, func(t *testing.T) {
			testCallbacks(t, console.start(t), "PAUSEPROXY_PAUSE_OPTIONS="+console.pauseOptions)
		})
	}
}

// testCallbacks drives the scripts against the admin console on port.
func testCallbacks(t *testing.T, port int, extraEnv ...string) {
	ctx := context.Background()
	env := []string{
		"PAUSEPROXY_ADMIN_URLS=" + adminDSN(port),
		"PAUSEPROXY_DATABASES=postgres",
		"PAUSEPROXY_TIMEOUT=20",
		"PAUSEPROXY_PROMOTE_WAIT=5",
		"PAUSEPROXY_LOCAL_PG=" + pg.DSN("postgres", "postgres", "postgres"),
	}
	// Last: the down case below replaces PAUSEPROXY_LOCAL_PG.
	env = append(extraEnv, env...)
	appDSN := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/postgres?sslmode=disable&default_query_exec_mode=simple_protocol", appPassword, port)

	// Connected before the pause: PgBouncer answers a login only once it
	// knows the server's parameters.
	held, err := pgx.Connect(ctx, appDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(ctx)

	// A transaction in flight: the pause must wait for it.
	inFlight, err := pgx.Connect(ctx, appDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer inFlight.Close(ctx)
	tx, err := inFlight.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO drain_log (client) VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		out string
		err error
	}
	pauseDone := make(chan result, 1)
	go func() {
		out, err := runScript(t, "pauseproxy-pause.sh", env)
		pauseDone <- result{out, err}
	}()
	select {
	case r := <-pauseDone:
		t.Fatalf("the pause returned while a transaction was in flight: %v\n%s", r.err, r.out)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during the pause: %v", err)
	}
	select {
	case r := <-pauseDone:
		if r.err != nil {
			t.Fatalf("pauseproxy-pause.sh: %v\n%s", r.err, r.out)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the pause did not return after the transaction committed")
	}
	if !paused(t, port) {
		t.Fatal("not paused after pauseproxy-pause.sh")
	}

	// The next transaction waits.
	heldDone := make(chan error, 1)
	go func() {
		_, err := held.Exec(ctx, "INSERT INTO drain_log (client) VALUES (-2)")
		heldDone <- err
	}()
	select {
	case err := <-heldDone:
		t.Fatalf("a transaction ran while paused: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	// A replica's role change does not resume.
	if out, err := runScript(t, "pauseproxy-resume.sh", env, "on_role_change", "replica", "demo"); err != nil {
		t.Fatalf("resume as a replica: %v\n%s", err, out)
	}
	if !paused(t, port) {
		t.Fatal("a replica's on_role_change resumed")
	}
	// The new primary's does.
	if out, err := runScript(t, "pauseproxy-resume.sh", env, "on_role_change", "master", "demo"); err != nil {
		t.Fatalf("pauseproxy-resume.sh: %v\n%s", err, out)
	}
	select {
	case err := <-heldDone:
		if err != nil {
			t.Fatalf("the held transaction: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held transaction did not run after the resume")
	}
	if paused(t, port) {
		t.Fatal("still paused after pauseproxy-resume.sh")
	}

	// A node that is not a running primary does not pause: nothing would
	// resume after it.
	down := slices.Clone(env)
	down[len(down)-1] = fmt.Sprintf("PAUSEPROXY_LOCAL_PG=postgresql://postgres@127.0.0.1:%d/postgres?connect_timeout=2", freePort(t))
	if out, err := runScript(t, "pauseproxy-pause.sh", down); err != nil || !strings.Contains(out, "not pausing") {
		t.Fatalf("pause with PostgreSQL down: %v\n%s", err, out)
	}
	if paused(t, port) {
		t.Fatal("paused although the local PostgreSQL is not a running primary")
	}
}
