package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// secretsConfig is a config whose passwords all come from outside it, as
// in the deployment files: the client login of app and the server login
// from the environment, a forced server login's password from the
// environment, an operator's client password from a file.
func secretsConfig(port int, opsPasswordFile string) string {
	return fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = "md5"
shutdown_timeout = "10s"

# Each client logs in to PostgreSQL as itself, with its [users] password.
[databases.postgres]
host = "127.0.0.1"
port = %d

# Every client logs in to PostgreSQL as app, with this password.
[databases.forced]
host = "127.0.0.1"
port = %[2]d
dbname = "postgres"
user = "app"
password_env = "PP_FORCED_DB_PASSWORD"

[users.app]
password_env = "PP_APP_PASSWORD"

[users.ops]
password_file = %q
`, port, pg.Port, opsPasswordFile)
}

// TestPasswordsFromEnvironment runs the binary with its secrets in the
// environment and in a file, against PostgreSQL with md5 logins.
func TestPasswordsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	opsFile := filepath.Join(dir, "ops-password")
	// Written by echo: the trailing newline is not part of the password.
	if err := os.WriteFile(opsFile, []byte("ops-Secret-91ab\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	file := filepath.Join(dir, "pauseproxy.toml")
	if err := os.WriteFile(file, []byte(secretsConfig(port, opsFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PP_APP_PASSWORD=" + appPassword, "PP_FORCED_DB_PASSWORD=" + appPassword}
	dsn := func(user, password, db string) string {
		return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", user, password, port, db)
	}
	p := startProxy(t, file, env, dsn("app", appPassword, "postgres"))

	ctx := context.Background()
	for _, tc := range []struct {
		name, user, password, db string
		wantUser                 string // current_user on the server
	}{
		{name: "client and server password from password_env", user: "app", password: appPassword, db: "postgres", wantUser: "app"},
		{name: "client password from password_file, forced server login from password_env", user: "ops", password: "ops-Secret-91ab", db: "forced", wantUser: "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := pgx.Connect(ctx, dsn(tc.user, tc.password, tc.db))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			var user string
			if err := c.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
				t.Fatal(err)
			}
			if user != tc.wantUser {
				t.Errorf("current_user = %s, want %s", user, tc.wantUser)
			}
		})
	}
	// The client password really is checked against the secret.
	_, err := pgx.Connect(ctx, dsn("app", "not-the-password", "postgres"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("login with a wrong password: %v, want SQLSTATE 28P01", err)
	}

	p.cmd.Process.Kill()
	<-p.done
	for _, s := range []string{appPassword, "ops-Secret-91ab"} {
		if strings.Contains(p.logs.String(), s) {
			t.Errorf("the log shows a password:\n%s", p.logs)
		}
	}
}

// TestMissingSecretNamesTheKey: check-config, and the proxy at start, fail
// on a missing secret naming the key and the variable or file, and never
// print a secret they did find.
func TestMissingSecretNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pauseproxy.toml")
	missingFile := filepath.Join(dir, "no-such-file")
	if err := os.WriteFile(file, []byte(secretsConfig(freePort(t), missingFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want []string // in the output
	}{
		{
			name: "check-config, variable not set",
			args: []string{"check-config", file},
			env:  []string{"PP_FORCED_DB_PASSWORD=" + appPassword},
			want: []string{"users.app.password_env", "PP_APP_PASSWORD is not set", "users.ops.password_file", missingFile},
		},
		{
			name: "check-config, variable empty",
			args: []string{"check-config", file},
			env:  []string{"PP_APP_PASSWORD=", "PP_FORCED_DB_PASSWORD=" + appPassword},
			want: []string{"users.app.password_env", "PP_APP_PASSWORD is empty"},
		},
		{
			name: "start, database password variable not set",
			args: []string{"--allow-root", "--config", file},
			env:  []string{"PP_APP_PASSWORD=" + appPassword},
			want: []string{"databases.forced.password_env", "PP_FORCED_DB_PASSWORD is not set"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), appPassword) {
				t.Errorf("output shows a password:\n%s", out)
			}
		})
	}
}
