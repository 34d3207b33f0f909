package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// Superuser is the bootstrap superuser initdb creates (initdb -U).
	Superuser = "postgres"
	// SuperuserPassword is Superuser's password, for TCP connections to a
	// cluster whose AuthMethod asks for one. Unix-socket connections (Exec)
	// are trusted.
	SuperuserPassword = "postgres"

	// readyTimeout bounds how long Start waits for a new server to accept
	// connections, and stopTimeout how long Stop and Restart wait for a fast
	// shutdown before they kill the server.
	readyTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second

	// bindAttempts is how many ports Start tries: FreePort closes its
	// listener before postgres binds, so another process may take the port.
	bindAttempts = 3
)

// Options configure a cluster. The zero value is a trust cluster without TLS.
type Options struct {
	// AuthMethod for host (TCP) connections in pg_hba.conf: "trust" (the
	// default when empty), "md5" or "scram-sha-256". Passwords are stored
	// with the matching password_encryption, so roles created with
	// CREATE ROLE ... PASSWORD on an md5 cluster really use MD5.
	AuthMethod string
	// Conf is extra postgresql.conf settings, name -> value, applied over
	// pgtest's defaults. Values are quoted by pgtest: write 50, not '50'.
	// port, listen_addresses and unix_socket_directories are managed by
	// pgtest and rejected here.
	Conf map[string]string
	// SSL makes the server accept TLS with a certificate signed by a
	// throwaway CA written to Cluster.CAFile.
	SSL bool
}

// Cluster is a running throwaway PostgreSQL cluster. Its exported fields are
// set by Start and never change. Methods are safe for concurrent use.
type Cluster struct {
	// Host is the address the server listens on: "127.0.0.1".
	Host string
	// Port is the TCP port; it stays the same across Restart.
	Port int
	// Dir is the data directory.
	Dir string
	// SocketDir holds the server's unix socket (.s.PGSQL.<Port>).
	SocketDir string
	// LogFile is the server log (stderr of every postmaster run, appended).
	LogFile string
	// CAFile is the PEM certificate of the CA that signed the server
	// certificate, and CertFile and KeyFile the server's certificate and
	// key (PEM, readable by root): set only with Options.SSL.
	CAFile, CertFile, KeyFile string

	opts   Options
	binDir string
	root   string // temporary directory holding everything; removed by Stop

	mu      sync.Mutex // guards the fields below
	proc    *postmaster
	removed bool // Stop has run
}

// Start creates a cluster with initdb and starts it, waiting up to 30s until
// it accepts connections. The caller must call Stop.
func Start(opts Options) (*Cluster, error) {
	method, err := authMethod(opts.AuthMethod)
	if err != nil {
		return nil, err
	}
	opts.AuthMethod = method
	if err := checkConf(opts.Conf); err != nil {
		return nil, err
	}
	binDir, err := BinDir()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	root, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: create cluster directory: %w", err)
	}
	c := &Cluster{
		Host:      "127.0.0.1",
		Dir:       filepath.Join(root, "data"),
		SocketDir: filepath.Join(root, "sock"),
		LogFile:   filepath.Join(root, "postgres.log"),
		opts:      opts,
		binDir:    binDir,
		root:      root,
	}
	if opts.SSL {
		c.CAFile = filepath.Join(root, "ca.crt")
		c.CertFile = filepath.Join(c.Dir, "server.crt")
		c.KeyFile = filepath.Join(c.Dir, "server.key")
	}
	if err := c.create(); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	if err := c.startFirst(); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	// Set after start, so the hash follows the password_encryption setting.
	if err := c.Exec(ctx, "ALTER ROLE "+Superuser+" PASSWORD '"+SuperuserPassword+"'"); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// create runs initdb and writes the configuration files, except pgtest.conf
// which depends on the port.
func (c *Cluster) create() error {
	if err := os.Mkdir(c.SocketDir, 0o700); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	// unix socket paths are limited to 107 bytes (sun_path).
	if n := len(filepath.Join(c.SocketDir, ".s.PGSQL.65535")); n > 107 {
		return fmt.Errorf("pgtest: socket path under %s is %d bytes, over the 107-byte limit: set TMPDIR to a shorter directory", c.root, n)
	}
	if err := ChownPostgres(c.root); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	cmd := exec.Command(filepath.Join(c.binDir, "initdb"),
		"-D", c.Dir, "-U", Superuser, "--auth-local=trust", "--auth-host=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Env = childEnv()
	cmd.Dir = c.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runAs(cmd, syscall.SIGKILL); err != nil {
		return fmt.Errorf("pgtest: initdb: %w", err)
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb %s: %w\n%s", c.Dir, err, tail(out.Bytes()))
	}
	if err := c.writeHBA(c.opts.AuthMethod); err != nil {
		return err
	}
	if c.opts.SSL {
		return c.writeTLSFiles()
	}
	return nil
}

// startFirst picks a free port and starts the server, trying another port
// if the one picked was taken in the meantime.
func (c *Cluster) startFirst() error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		c.Port = port
		if err := c.writeConf(); err != nil {
			return err
		}
		err = c.startLocked(ctx)
		var se *startError
		if err == nil || attempt == bindAttempts || !errors.As(err, &se) || !se.portTaken() {
			return err
		}
	}
}

// Addr returns "127.0.0.1:port".
func (c *Cluster) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// DSN returns a postgres:// URL for a TCP connection without TLS, usable by
// libpq, psql and pgx. An empty password leaves it out; an empty db means
// the database named like the user.
func (c *Cluster) DSN(user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(user),
		Host:     c.Addr(),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// Exec runs sql as Superuser over the unix socket (trusted whatever
// AuthMethod is), in the postgres database. sql is sent as one simple Query:
// several statements separated by semicolons run in one implicit
// transaction, so statements that refuse a transaction block (CREATE
// DATABASE, VACUUM) need an Exec of their own.
func (c *Cluster) Exec(ctx context.Context, sql string) error {
	conn, err := c.connectSocket(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("pgtest: exec %q: %w", abbrev(sql), err)
	}
	return nil
}

func (c *Cluster) connectSocket(ctx context.Context) (*pgconn.PgConn, error) {
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("host='%s' port=%d user=%s dbname=postgres sslmode=disable",
		strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(c.SocketDir), c.Port, Superuser))
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect to %s: %w", c.SocketDir, err)
	}
	return conn, nil
}

// PID returns the process id of the running postmaster, or 0 if it is not
// running (stopped, killed or crashed).
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil || c.proc.exited() {
		return 0
	}
	return c.proc.cmd.Process.Pid
}

// Stop shuts the server down (fast shutdown: SIGINT, which rolls back open
// transactions and disconnects clients), waits for it, and removes all of
// the cluster's files. It kills the server if it has not stopped after 30s.
// Calling it again does nothing and returns nil.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return nil
	}
	c.removed = true
	var errs []error
	if c.proc != nil {
		errs = append(errs, c.proc.stop(context.Background()))
		c.proc = nil
	}
	if err := os.RemoveAll(c.root); err != nil {
		errs = append(errs, fmt.Errorf("pgtest: remove %s: %w", c.root, err))
	}
	return errors.Join(errs...)
}

// Restart stops the server (fast shutdown, as Stop, when it is running) and
// starts it again on the same port and data, waiting until it accepts
// connections or ctx ends (at most 30s). After Kill it performs crash
// recovery.
func (c *Cluster) Restart(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return errors.New("pgtest: restart: cluster was stopped and removed")
	}
	if c.proc != nil {
		err := c.proc.stop(ctx)
		c.proc = nil
		if err != nil {
			return fmt.Errorf("pgtest: restart: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := c.startLocked(ctx); err != nil {
		return fmt.Errorf("pgtest: restart: %w", err)
	}
	return nil
}

// Kill simulates a crash of the database host: it kills the postmaster and
// all its children (backends, checkpointer, ...) with SIGKILL and waits until
// they are gone, so clients see their connections reset. Restart brings the
// server back through crash recovery. With the default
// synchronous_commit=off, the last transactions before Kill may be lost.
func (c *Cluster) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return errors.New("pgtest: kill: cluster was stopped and removed")
	}
	if c.proc == nil {
		return fmt.Errorf("pgtest: kill: %w", errNotRunning)
	}
	err := c.proc.kill()
	c.proc = nil
	return err
}

// startLocked starts the postmaster on the configured port and waits until
// it accepts connections. c.mu must be held.
func (c *Cluster) startLocked(ctx context.Context) error {
	p, err := startPostmaster(c.binDir, c.Dir, c.LogFile)
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, p); err != nil {
		p.kill()
		return err
	}
	c.proc = p
	return nil
}

// waitReady polls with a connection over the unix socket until one
// succeeds, the postmaster exits, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, p *postmaster) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := c.connectSocket(attempt)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-p.done:
			return &startError{err: p.err, log: p.logSince()}
		case <-ctx.Done():
			return &startError{err: fmt.Errorf("not accepting connections: %w (last: %v)", ctx.Err(), err), log: p.logSince()}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startError says why a postmaster did not become ready, with the end of
// what it logged.
type startError struct {
	err error
	log []byte
}

func (e *startError) Error() string {
	return fmt.Sprintf("pgtest: start postgres: %v; server log ends with:\n%s", e.err, tail(e.log))
}

func (e *startError) Unwrap() error { return e.err }

// portTaken reports whether the postmaster failed because its port was in
// use. The message is the only signal (the postmaster has no SQLSTATE to
// give before it listens); the server runs with lc_messages=C.
func (e *startError) portTaken() bool {
	return bytes.Contains(e.log, []byte("Address already in use"))
}

// tail returns the last lines of a log, at most about 4 KiB.
func tail(b []byte) string {
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimRight(string(b), "\n")
}

func abbrev(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// errNotRunning is returned by operations that need a live postmaster.
var errNotRunning = errors.New("cluster is not running")
