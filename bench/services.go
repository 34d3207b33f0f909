package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// The role and database every scenario uses, on every target.
const (
	benchUser     = "bench"
	benchPassword = "bench"
	benchDB       = "bench"
)

// pgbouncerBin is Debian's PgBouncer.
const pgbouncerBin = "/usr/sbin/pgbouncer"

// readyTimeout bounds how long a pooler may take to accept its first
// client.
const readyTimeout = 20 * time.Second

// Target is an endpoint pgbench is pointed at.
type Target struct {
	Name string
	Port int
	// Proc is the pooler process whose CPU and memory are read from /proc;
	// nil for direct (PostgreSQL's work is spread over its backends).
	Proc *process
	// GOMAXPROCS a pauseproxy target runs with; 0 for the Go default
	// (the number of CPUs).
	GOMAXPROCS int
}

// process is a pooler started by the benchmark. Its stdout and stderr go
// to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal // the signal that closes everything at once
	done    chan struct{}  // closed when the process has exited
	err     error          // Wait's result, set before done is closed

	stopOnce sync.Once
}

// startProcess starts cmd with its output appended to logPath. cmd must
// already carry its credentials; it gets a parent-death signal if it has
// none, so that a killed benchmark leaves nothing behind.
func startProcess(name string, cmd *exec.Cmd, logPath string, stopSig syscall.Signal) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if cmd.SysProcAttr.Pdeathsig == 0 {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, stopSig: stopSig, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *process) PID() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends the stop signal, waits up to 10s, then kills. Safe to call
// twice.
func (p *process) Stop() {
	p.stopOnce.Do(func() {
		if p.exited() {
			return
		}
		p.cmd.Process.Signal(p.stopSig)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	return tailLines(string(b), 20)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// benchDSN is a connection string for the bench user through port.
func benchDSN(port int) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=5",
		port, benchUser, benchPassword, benchDB)
}

// waitAccepting connects as the bench user until it works, the process
// exits, or readyTimeout passes.
func waitAccepting(ctx context.Context, p *process, port int) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		c, err := pgconn.Connect(attempt, benchDSN(port))
		cancelAttempt()
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1").ReadAll()
			c.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); its log ends with:\n%s", p.name, p.err, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting clients on port %d after %s: %v; its log ends with:\n%s", p.name, port, readyTimeout, last, p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PoolSettings are the settings PgBouncer and pauseproxy share, so that
// they are compared on equal terms.
type PoolSettings struct {
	PoolMode      string `json:"pool_mode"`
	PoolSize      int    `json:"default_pool_size"`
	MaxClientConn int    `json:"max_client_conn"`
	AuthType      string `json:"auth_type"`
	ClientTLSMode string `json:"client_tls_sslmode"`
	ServerTLSMode string `json:"server_tls_sslmode"`
}

// writeUserlist writes PgBouncer's auth_file format, read by both poolers:
// clear-text passwords let each of them log in to the server with the
// client's password, whatever the server's method.
func writeUserlist(path string) error {
	return os.WriteFile(path, fmt.Appendf(nil, "%q %q\n", benchUser, benchPassword), 0o600)
}

// serverAddr is where a pooler finds PostgreSQL.
type serverAddr struct {
	Host string
	Port int
}

// startPgBouncer starts Debian's PgBouncer as the postgres OS user (it
// refuses to run as root), in foreground mode, in a directory of its own
// under dir.
func startPgBouncer(ctx context.Context, dir, name string, s PoolSettings, server serverAddr) (*Target, error) {
	home := filepath.Join(dir, name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	if err := writeUserlist(filepath.Join(home, "userlist.txt")); err != nil {
		return nil, err
	}
	ini := pgbouncerINI(home, port, s, server)
	if err := os.WriteFile(filepath.Join(home, "pgbouncer.ini"), []byte(ini), 0o600); err != nil {
		return nil, err
	}
	if err := pgtest.ChownPostgres(home); err != nil {
		return nil, err
	}
	cmd := exec.Command(pgbouncerBin, filepath.Join(home, "pgbouncer.ini"))
	cmd.Dir = home
	if err := pgtest.RunAsPostgres(cmd); err != nil {
		return nil, err
	}
	// SIGINT would be PgBouncer's safe shutdown, which waits for clients;
	// SIGTERM closes at once (pgbouncer(1), "Signals").
	p, err := startProcess(name, cmd, filepath.Join(dir, name+".log"), syscall.SIGTERM)
	if err != nil {
		return nil, err
	}
	if err := waitAccepting(ctx, p, port); err != nil {
		p.Stop()
		return nil, err
	}
	return &Target{Name: name, Port: port, Proc: p}, nil
}

// pgbouncerINI is the PgBouncer configuration. Everything not written here
// is PgBouncer's default.
func pgbouncerINI(home string, port int, s PoolSettings, server serverAddr) string {
	return fmt.Sprintf(`; Written by pauseproxy bench/.
[databases]
%s = host=%s port=%d dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = %s
auth_file = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = %d
client_tls_sslmode = %s
server_tls_sslmode = %s
admin_users = %s
; Both poolers have log_connections and log_disconnections off: their
; default (1) writes two lines per transaction in the -C scenario.
log_connections = 0
log_disconnections = 0
logfile =
pidfile =
`, benchDB, server.Host, server.Port, benchDB,
		port, s.AuthType, filepath.Join(home, "userlist.txt"), s.PoolMode, s.PoolSize, s.MaxClientConn,
		s.ClientTLSMode, s.ServerTLSMode, benchUser)
}

// pauseproxyConfig is the pauseproxy configuration for a static server;
// database is the [databases.bench] body.
func pauseproxyConfig(port int, s PoolSettings, database string) string {
	return fmt.Sprintf(`# Written by pauseproxy bench/.
[proxy]
listen_addr = "127.0.0.1"
listen_port = %d
unix_socket_dir = ""
auth_type = %q
auth_file = "userlist.txt"
pool_mode = %q
default_pool_size = %d
max_client_conn = %d
client_tls_sslmode = %q
server_tls_sslmode = %q
admin_users = [%q]
log_connections = false
log_disconnections = false

[databases.%s]
%s`, port, s.AuthType, s.PoolMode, s.PoolSize, s.MaxClientConn, s.ClientTLSMode, s.ServerTLSMode, benchUser, benchDB, database)
}

func staticDatabase(server serverAddr) string {
	return fmt.Sprintf("host = %q\nport = %d\ndbname = %q\n", server.Host, server.Port, benchDB)
}

// allowRootArgs is ["--allow-root"] when the bench runs as root and bin
// knows the flag: pauseproxy refuses to serve as root without it, and a
// build of an older revision (--rev) has no such flag and no such refusal.
func allowRootArgs(bin string) []string {
	if os.Geteuid() != 0 {
		return nil
	}
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	if !bytes.Contains(out, []byte("--allow-root")) {
		return nil
	}
	return []string{"--allow-root"}
}

// startPauseproxy runs the pauseproxy binary with its config in a
// directory of its own under dir. gomaxprocs 0 leaves Go's default.
func startPauseproxy(ctx context.Context, bin, dir, name string, s PoolSettings, database string, gomaxprocs int) (*Target, string, error) {
	home := filepath.Join(dir, name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, "", err
	}
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, "", err
	}
	if err := writeUserlist(filepath.Join(home, "userlist.txt")); err != nil {
		return nil, "", err
	}
	cfgPath := filepath.Join(home, "pauseproxy.toml")
	if err := os.WriteFile(cfgPath, []byte(pauseproxyConfig(port, s, database)), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, append(allowRootArgs(bin), "--config", cfgPath)...)
	cmd.Dir = home
	cmd.Env = os.Environ()
	if gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", gomaxprocs))
	}
	// SIGINT closes every client at once; SIGTERM would drain.
	p, err := startProcess(name, cmd, filepath.Join(dir, name+".log"), syscall.SIGINT)
	if err != nil {
		return nil, "", err
	}
	if err := waitAccepting(ctx, p, port); err != nil {
		p.Stop()
		return nil, "", err
	}
	return &Target{Name: name, Port: port, Proc: p, GOMAXPROCS: gomaxprocs}, cfgPath, nil
}

// startPostgres starts the throwaway cluster and creates the bench role and
// database, filled by pgbench -i at the given scale.
func startPostgres(ctx context.Context, authType string, scale int) (*pgtest.Cluster, error) {
	pg, err := pgtest.Start(pgtest.Options{AuthMethod: authType})
	if err != nil {
		return nil, err
	}
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", benchUser, benchPassword),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", benchDB, benchUser),
	} {
		if err := pg.Exec(ctx, sql); err != nil {
			pg.Stop()
			return nil, err
		}
	}
	if err := pgbenchInit(ctx, pg.Port, scale); err != nil {
		pg.Stop()
		return nil, err
	}
	return pg, nil
}

// pgbenchInit runs pgbench -i against port, directly on a server.
func pgbenchInit(ctx context.Context, port, scale int) error {
	cmd := exec.CommandContext(ctx, "pgbench", "-i", "-q", "-s", fmt.Sprint(scale),
		"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-U", benchUser, benchDB)
	cmd.Env = clientEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i -s %d: %w\n%s", scale, err, out)
	}
	return nil
}

// errNotAvailable marks a scenario the setup cannot run on this machine or
// with this pauseproxy; the report says "not available" and why.
var errNotAvailable = errors.New("not available")
