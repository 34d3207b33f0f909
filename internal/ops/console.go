package ops

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Console is a Proxy reached through its admin console (the virtual
// database "pauseproxy"), with the simple query protocol. It keeps one
// connection, dialed on first use and again after a failure.
type Console struct {
	name string
	cfg  *pgconn.Config
	// from says where the proxy came from (From); hint is added to a
	// failure to connect.
	from, hint string

	mu   sync.Mutex // guards conn; held for a whole command, so commands run one at a time
	conn *pgconn.PgConn
}

// ConsoleLogin is how to log into admin consoles.
type ConsoleLogin struct {
	User string
	// Password in clear text; "" leaves it to libpq's sources
	// (PGPASSWORD, ~/.pgpass), or to trust.
	Password string
}

// consoleConnectTimeout bounds one dial and login.
const consoleConnectTimeout = 5 * time.Second

// NewConsole returns the console of the proxy listening on host:port; a
// host starting with "/" is a Unix socket directory.
func NewConsole(host string, port int, login ConsoleLogin) (*Console, error) {
	name := net.JoinHostPort(host, strconv.Itoa(port))
	if strings.HasPrefix(host, "/") {
		name = fmt.Sprintf("%s/.s.PGSQL.%d", host, port)
	}
	// sslmode=prefer: a proxy with client TLS gets TLS, one without
	// answers the SSLRequest with N and the login goes on in clear.
	conn := fmt.Sprintf("host=%s port=%d user=%s dbname=pauseproxy sslmode=prefer application_name=pauseproxy-ops connect_timeout=%d",
		quoteConnValue(host), port, quoteConnValue(login.User), int(consoleConnectTimeout/time.Second))
	if login.Password != "" {
		conn += " password=" + quoteConnValue(login.Password)
	}
	cfg, err := pgconn.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("admin console %s: %w", name, err)
	}
	return &Console{name: name, cfg: cfg}, nil
}

// quoteConnValue quotes a keyword/value connection string value (libpq,
// "Keyword/Value Connection Strings").
func quoteConnValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// dbArg is the optional database argument of a console command: " name",
// quoted for the console's parser, or "" for every database.
func dbArg(db string) string {
	if db == "" {
		return ""
	}
	return ` "` + strings.ReplaceAll(db, `"`, `""`) + `"`
}

// Name implements Proxy.
func (c *Console) Name() string { return c.name }

// From says where the proxy came from: "this proxy", "peers" (the
// config's), or its Consul registration.
func (c *Console) From() string { return c.from }

// exec runs one simple Query and returns its result sets. The connection
// is dropped after any error that is not the server's answer, so the next
// command dials afresh.
func (c *Console) exec(ctx context.Context, sql string) ([]*pgconn.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosed() {
		dctx, cancel := context.WithTimeout(ctx, consoleConnectTimeout)
		conn, err := pgconn.ConnectConfig(dctx, c.cfg)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connect to admin console: %w%s", err, c.hint)
		}
		c.conn = conn
	}
	res, err := c.conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		if c.conn.IsClosed() {
			c.conn = nil
		}
		return nil, err
	}
	return res, nil
}

// Pause implements Proxy; db "" pauses every database.
func (c *Console) Pause(ctx context.Context, db string, timeout, expire time.Duration) error {
	sql := "PAUSE" + dbArg(db)
	if timeout > 0 {
		sql += fmt.Sprintf(" TIMEOUT '%s'", timeout)
	}
	if expire > 0 {
		sql += fmt.Sprintf(" EXPIRE '%s'", expire.Round(time.Second))
	}
	_, err := c.exec(ctx, sql)
	return err
}

// Resume implements Proxy; db "" ends every pause.
func (c *Console) Resume(ctx context.Context, db string) error {
	_, err := c.exec(ctx, "RESUME"+dbArg(db))
	return err
}

// Reconnect implements Proxy.
func (c *Console) Reconnect(ctx context.Context, db string) error {
	_, err := c.exec(ctx, "RECONNECT"+dbArg(db))
	return err
}

// State implements Proxy.
func (c *Console) State(ctx context.Context, db string) (State, error) {
	all, err := c.States(ctx)
	if err != nil {
		return State{}, err
	}
	st, ok := all[db]
	if !ok {
		return State{}, fmt.Errorf("no such database: %s", db)
	}
	return st, nil
}

// States returns the state of every database of the proxy, from SHOW
// DATABASES (held_by) and SHOW TOPOLOGY (primary_addr, verified).
func (c *Console) States(ctx context.Context) (map[string]State, error) {
	res, err := c.exec(ctx, "SHOW DATABASES; SHOW TOPOLOGY")
	if err != nil {
		return nil, err
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("SHOW DATABASES; SHOW TOPOLOGY: %d result sets, want 2", len(res))
	}
	out := map[string]State{}
	dbs, err := columns(res[0], "name", "held_by")
	if err != nil {
		return nil, fmt.Errorf("SHOW DATABASES: %w", err)
	}
	for _, row := range dbs {
		if row[0] == "pgbouncer" {
			continue
		}
		out[row[0]] = State{Paused: holdsPause(row[1])}
	}
	topo, err := columns(res[1], "database", "primary_addr", "verified")
	if err != nil {
		return nil, fmt.Errorf("SHOW TOPOLOGY (a pauseproxy too old for the operator commands?): %w", err)
	}
	for _, row := range topo {
		st := out[row[0]]
		st.Primary, st.Verified = row[1], row[2]
		out[row[0]] = st
	}
	return out, nil
}

// holdsPause reports whether SHOW DATABASES' held_by (reasons separated by
// commas) includes PAUSE's reason, "pause".
func holdsPause(heldBy string) bool {
	for r := range strings.SplitSeq(heldBy, ",") {
		if strings.TrimSpace(r) == "pause" {
			return true
		}
	}
	return false
}

// columns picks the named columns of every row of res; NULL reads "".
func columns(res *pgconn.Result, names ...string) ([][]string, error) {
	idx := make([]int, len(names))
	for i, n := range names {
		idx[i] = -1
		for j, fd := range res.FieldDescriptions {
			if fd.Name == n {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("no column %q", n)
		}
	}
	out := make([][]string, 0, len(res.Rows))
	for _, row := range res.Rows {
		vals := make([]string, len(idx))
		for i, j := range idx {
			vals[i] = string(row[j])
		}
		out = append(out, vals)
	}
	return out, nil
}

// Close implements Proxy.
func (c *Console) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.conn.Close(ctx)
	c.conn = nil
	return err
}
