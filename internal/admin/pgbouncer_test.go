package admin_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// pgBouncer is Debian's pgbouncer (1.18 on Debian 12) run side by side
// with pauseproxy against the same cluster, to compare their consoles.
type pgBouncer struct {
	Port int
	Dir  string
}

// pgbouncerPath finds the binary: $PGBOUNCER, else PATH, else Debian's
// /usr/sbin (not on a non-root PATH).
func pgbouncerPath() (string, error) {
	if p := os.Getenv("PGBOUNCER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", fmt.Errorf("pgbouncer not found (install Debian's pgbouncer, or set PGBOUNCER)")
}

// startPgBouncer runs pgbouncer in the foreground with the same users,
// pool settings and database as startProxy. PgBouncer refuses to run as
// root, so under root it runs as the postgres OS user, like the cluster.
// It is stopped when the test ends. A missing pgbouncer fails the test: it
// never skips.
func startPgBouncer(t testing.TB) *pgBouncer {
	t.Helper()
	bin, err := pgbouncerPath()
	if err != nil {
		t.Fatal(err)
	}
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): its parents are private to root, and pgbouncer runs
	// as postgres.
	dir, err := os.MkdirTemp("", "pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ini := fmt.Sprintf(`[databases]
appdb = host=127.0.0.1 port=%d dbname=appdb

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = md5
auth_file = %s
admin_users = admin
stats_users = stats
pool_mode = transaction
default_pool_size = 5
logfile = %s
`, pg.Port, port, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.log"))
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(userlist), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pgtest.ChownPostgres(dir); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-q", filepath.Join(dir, "pgbouncer.ini"))
	cmd.Dir = dir
	if err := pgtest.RunAsPostgres(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := pgconn.Connect(context.Background(), fmt.Sprintf("host=127.0.0.1 port=%d user=admin password=adminpass dbname=pgbouncer sslmode=disable", port))
		if err == nil {
			c.Close(context.Background())
			return &pgBouncer{Port: port, Dir: dir}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer did not start: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
