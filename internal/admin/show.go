package admin

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/pool"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// The SHOW commands. Column names, order and types are PgBouncer 1.25's
// (doc/usage.md, src/admin.c and src/stats.c; columns1_25_test.go), so
// that scripts and exporters written for 1.25 find prepared_statements,
// reserve_pool_size, load_balance_hosts, the client-limit columns and the
// prepared statement counters. Every column of PgBouncer 1.18 (Debian 12's)
// is still there, in the same relative order (show_test.go compares with
// the real one); the one 1.18 name 1.25 renamed is reserve_pool (SHOW
// DATABASES), now reserve_pool_size as in 1.25, and also kept under its
// old name as the last column. Columns pauseproxy adds come after
// PgBouncer's, never in between.
//
// The admin database itself appears where PgBouncer shows it (SHOW
// DATABASES, POOLS, CLIENTS), as "pgbouncer", and the "*" fallback entry,
// which is a template rather than a database, does not.

// shows maps SHOW's argument (lower case) to its implementation.
var shows map[string]func(c *Console, args []token, r *reply) error

func init() {
	shows = map[string]func(c *Console, args []token, r *reply) error{
		"help":           (*Console).showHelp,
		"version":        noArgs((*Console).showVersion),
		"config":         noArgs((*Console).showConfig),
		"databases":      noArgs((*Console).showDatabases),
		"pools":          noArgs((*Console).showPools),
		"clients":        noArgs((*Console).showClients),
		"servers":        noArgs((*Console).showServers),
		"stats":          noArgs((*Console).showStats),
		"stats_totals":   noArgs((*Console).showStatsTotals),
		"stats_averages": noArgs((*Console).showStatsAverages),
		"totals":         noArgs((*Console).showTotals),
		"lists":          noArgs((*Console).showLists),
		"users":          noArgs((*Console).showUsers),
		"state":          noArgs((*Console).showState),
		"mem":            emptySet(cols(oidText, "name", oidInt4, "size", "used", "free", "memtotal")),
		"dns_hosts":      emptySet(cols(oidText, "hostname", oidInt8, "ttl", oidText, "addrs")),
		"dns_zones":      emptySet(cols(oidText, "zonename", oidInt8, "serial", oidInt4, "count")),
		"peers":          emptySet(cols(oidInt4, "peer_id", oidText, "host", oidInt4, "port", "pool_size")),
		"peer_pools":     emptySet(cols(oidInt4, "peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel", "sv_login")),
		"fds":            unsupported("SHOW FDS"),
		"sockets":        unsupported("SHOW SOCKETS"),
		"active_sockets": unsupported("SHOW ACTIVE_SOCKETS"),
		"topology":       (*Console).showTopology,
		"events":         noArgs((*Console).showEvents),
	}
}

func noArgs(f func(c *Console, r *reply)) func(c *Console, args []token, r *reply) error {
	return func(c *Console, args []token, r *reply) error {
		if len(args) > 0 {
			return errSyntax
		}
		f(c, r)
		return nil
	}
}

// emptySet answers PgBouncer internals pauseproxy has no equivalent of
// (memory slabs, DNS cache, peers) with their columns and no rows, so that
// scripts that read them still run.
func emptySet(columns []column) func(c *Console, args []token, r *reply) error {
	return noArgs(func(c *Console, r *reply) { r.rows("SHOW", columns, nil) })
}

func unsupported(what string) func(c *Console, args []token, r *reply) error {
	return func(*Console, []token, *reply) error {
		return errorf("0A000", "%s is not supported by pauseproxy (it shows PgBouncer's sockets, for its online restart)", what)
	}
}

// fakeParams are the server parameters clients sometimes SHOW or SET on
// connecting; the console fakes them, as PgBouncer does.
var fakeParams = map[string]string{
	"client_encoding":               "UTF-8",
	"default_transaction_isolation": "read committed",
	"standard_conforming_strings":   "on",
	"datestyle":                     "ISO",
	"timezone":                      "GMT",
}

// show runs SHOW (and SELECT, its alias).
func (c *Console) show(_ context.Context, _ *consoleConn, args []token, r *reply) error {
	if len(args) == 0 || args[0].quote == '\'' {
		return errSyntax
	}
	name := strings.ToLower(args[0].text)
	if v, ok := fakeParams[name]; ok && len(args) == 1 {
		r.rows("SHOW", []column{textCol(name)}, [][]any{{v}})
		return nil
	}
	f, ok := shows[name]
	if !ok {
		return errSyntax
	}
	return f(c, args[1:], r)
}

// helpText lists the commands, PgBouncer's first.
const helpText = `
	SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
	SHOW LISTS|STATE|MEM|DNS_HOSTS|DNS_ZONES|PEERS|PEER_POOLS
	SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
	SHOW TOPOLOGY [<db>]
	SHOW EVENTS
	SET key = arg
	RELOAD
	PAUSE [<db>] [TIMEOUT '<duration>'] [EXPIRE '<duration>']
	RESUME [<db>]
	DISABLE <db>
	ENABLE <db>
	RECONNECT [<db>]
	KILL [<db>]
	KILL_CLIENT <id>
	SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]
	WAIT_CLOSE [<db>]
	SWITCHOVER [<db>] [TO <member>]`

func (c *Console) showHelp(args []token, r *reply) error {
	if len(args) > 0 {
		return errSyntax
	}
	r.notice("Console usage", helpText)
	r.complete("SHOW")
	return nil
}

func (c *Console) showVersion(r *reply) {
	r.rows("SHOW", []column{textCol("version")}, [][]any{{"pauseproxy " + c.o.Version}})
}

func (c *Console) showConfig(r *reply) {
	var rows [][]any
	for _, s := range config.Settings(c.o.Router.Config()) {
		rows = append(rows, []any{s.Key, s.Value, s.Default, yesNo(s.Changeable)})
	}
	r.rows("SHOW", cols(oidText, "key", "value", "default", "changeable"), rows)
}

// adminDB is the name the admin database has in SHOW output.
const adminDB = "pgbouncer"

// databases returns the router's databases without the "*" template.
func (c *Console) databases() []*router.Database {
	var out []*router.Database
	for _, d := range c.o.Router.Databases() {
		if d.Name != "*" {
			out = append(out, d)
		}
	}
	return out
}

func (c *Console) showDatabases(r *reply) {
	columns := cols(oidText, "name", "host", oidInt4, "port", oidText, "database", "force_user",
		oidInt4, "pool_size", "min_pool_size", "reserve_pool_size", "server_lifetime",
		oidText, "pool_mode", "load_balance_hosts",
		oidInt4, "max_connections", "current_connections", "max_client_connections", "current_client_connections",
		"paused", "disabled",
		// pauseproxy's own, then reserve_pool: PgBouncer 1.18's name of
		// reserve_pool_size, for exporters and scripts that read it by
		// that name.
		oidText, "held_by", oidInt8, "generation", oidInt4, "reserve_pool")
	cfg := c.o.Router.Config()
	clients := map[string]int{}
	for _, s := range c.o.Router.Sessions() {
		clients[s.DBName]++
	}
	rows := [][]any{{adminDB, nil, cfg.Proxy.ListenPort, adminDB, adminDB, 2, 0, 0,
		int(cfg.Proxy.ServerLifetime / time.Second), "statement", nil, 0, 0, 0, len(c.consoleConns()), 0, 0, "", 0, 0}}
	for _, d := range c.databases() {
		dc := d.Config()
		t := d.Target()
		_, reasons := d.Held()
		dbname := dc.DBName
		if dbname == "" {
			dbname = d.Name
		}
		current := 0
		for _, p := range d.Pools() {
			current += p.Stats().Total
		}
		rows = append(rows, []any{
			d.Name, nilIfEmpty(t.Host), t.Port, dbname, nilIfEmpty(dc.User),
			dc.PoolSize, dc.MinPoolSize, dc.ReservePool, int(cfg.Proxy.ServerLifetime / time.Second),
			nilIfEmpty(string(dc.PoolMode)), loadBalanceHosts(dc),
			dc.MaxDBConns, current, 0, clients[d.Name], slices.Contains(reasons, PauseReason), d.Disabled(),
			strings.Join(reasons, ","), t.Gen, dc.ReservePool,
		})
	}
	slices.SortFunc(rows, func(a, b []any) int { return cmp.Compare(a[0].(string), b[0].(string)) })
	r.rows("SHOW", columns, rows)
}

// loadBalanceHosts is SHOW DATABASES' and SHOW POOLS' load_balance_hosts:
// NULL for a single host, as in PgBouncer. With a list of hosts
// pauseproxy does not spread connections over them: it connects to the
// one that is the writable primary, which is what PgBouncer calls
// "disable" (the first host that works).
func loadBalanceHosts(dc *config.Database) any {
	if len(dc.Hosts) > 1 {
		return "disable"
	}
	return nil
}

// poolEntry is one pool with its database and user.
type poolEntry struct {
	db   *router.Database
	user string
	pool *pool.Pool
}

// pools returns every pool, sorted by database and user.
func (c *Console) pools() []poolEntry {
	var out []poolEntry
	for _, d := range c.databases() {
		for user, p := range d.Pools() {
			out = append(out, poolEntry{d, user, p})
		}
	}
	slices.SortFunc(out, func(a, b poolEntry) int {
		return cmp.Or(cmp.Compare(a.db.Name, b.db.Name), cmp.Compare(a.user, b.user))
	})
	return out
}

// poolMode is the pool mode clients of user on d get.
func (c *Console) poolMode(d *router.Database, user string) string {
	cfg := c.o.Router.Config()
	if u, ok := cfg.Users[user]; ok && u.PoolMode != "" {
		return string(u.PoolMode)
	}
	if m := d.Config().PoolMode; m != "" {
		return string(m)
	}
	return string(cfg.Proxy.PoolMode)
}

func (c *Console) showPools(r *reply) {
	columns := cols(oidText, "database", "user",
		oidInt4, "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
		"sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
		"maxwait", "maxwait_us", oidText, "pool_mode", "load_balance_hosts",
		// pauseproxy's own: 1 while the pool holds new transactions.
		oidInt4, "held")
	type counts struct{ active, waiting int }
	byPool := map[*pool.Pool]*counts{}
	for _, s := range c.o.Router.Sessions() {
		info := s.Info()
		n := byPool[info.Pool]
		if n == nil {
			n = &counts{}
			byPool[info.Pool] = n
		}
		if info.State == "waiting" {
			n.waiting++
		} else {
			n.active++
		}
	}
	rows := [][]any{{adminDB, adminDB, len(c.consoleConns()), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "statement", nil, 0}}
	for _, e := range c.pools() {
		st := e.pool.Stats()
		n := byPool[e.pool]
		if n == nil {
			n = &counts{}
		}
		rows = append(rows, []any{
			e.db.Name, e.user, n.active, n.waiting, 0, 0,
			st.Active, 0, 0, st.Idle, 0, 0, st.Dialing,
			int(st.MaxWait / time.Second), int(st.MaxWait % time.Second / time.Microsecond),
			c.poolMode(e.db, e.user), loadBalanceHosts(e.db.Config()), st.Held,
		})
	}
	slices.SortStableFunc(rows, func(a, b []any) int {
		return cmp.Or(cmp.Compare(a[0].(string), b[0].(string)), cmp.Compare(a[1].(string), b[1].(string)))
	})
	r.rows("SHOW", columns, rows)
}

// socketColumns are the columns of SHOW CLIENTS and SHOW SERVERS
// (PgBouncer 1.25's socket_header): replication since 1.23,
// prepared_statements since 1.21, id since 1.22.
func socketColumns(extra ...any) []column {
	return cols(append([]any{oidText, "type", "user", "database", "replication", "state", "addr", oidInt4, "port",
		oidText, "local_addr", oidInt4, "local_port", oidText, "connect_time", "request_time",
		oidInt4, "wait", "wait_us", "close_needed", oidText, "ptr", "link", oidInt4, "remote_pid",
		oidText, "tls", "application_name", oidInt4, "prepared_statements", "id"}, extra...)...)
}

// noReplication is the replication column: pauseproxy serves no
// replication connections.
const noReplication = "none"

// clientPtr and serverPtr stand for PgBouncer's object addresses (ptr and
// link): unique, and a client's link is its server's ptr and back.
func clientPtr(id uint64) string { return fmt.Sprintf("c%d", id) }
func serverPtr(id uint64) string { return fmt.Sprintf("s%d", id) }

func (c *Console) showClients(r *reply) {
	columns := socketColumns()
	listenPort := c.o.Router.Config().Proxy.ListenPort
	var rows [][]any
	for _, cc := range c.consoleConns() {
		addr, port := splitAddr(cc.remote, listenPort)
		laddr, lport := splitAddr(cc.local, listenPort)
		rows = append(rows, []any{"C", cc.user, adminDB, noReplication, "active", addr, port, laddr, lport,
			cc.start, time.Unix(0, cc.lastRequest.Load()), 0, 0, 0, fmt.Sprintf("a%d", cc.id), "", 0, "", "", 0, nil})
	}
	for _, s := range c.o.Router.Sessions() {
		info := s.Info()
		addr, port := splitAddr(info.RemoteAddr, listenPort)
		laddr, lport := splitAddr(info.LocalAddr, listenPort)
		link, app := "", ""
		if info.Server != nil {
			link = serverPtr(info.Server.ID)
			app, _ = info.Server.Param("application_name")
		}
		request := info.XactStart
		if request.IsZero() {
			request = s.Start
		}
		var wait time.Duration // PgBouncer: how long a waiting client has waited so far
		if !info.WaitStart.IsZero() {
			wait = time.Since(info.WaitStart)
			request = info.WaitStart
		}
		rows = append(rows, []any{"C", s.User, s.DBName, noReplication, info.State, addr, port, laddr, lport,
			s.Start, request, int(wait / time.Second), int(wait % time.Second / time.Microsecond), 0, clientPtr(s.ID), link, 0,
			tlsText(info.TLS), app, s.PreparedStatements(), s.ID})
	}
	r.rows("SHOW", columns, rows)
}

func (c *Console) showServers(r *reply) {
	columns := socketColumns(oidInt8, "generation")
	var rows [][]any
	for _, e := range c.pools() {
		for _, ci := range e.pool.Conns() {
			t := ci.Conn.Target()
			addr := t.Host
			if strings.HasPrefix(addr, "/") {
				addr = "unix"
			}
			laddr, lport := splitAddr(ci.Conn.LocalAddr(), 0)
			state, link, app := "active", "", ""
			if ci.Idle {
				state = "idle"
			}
			if s, ok := ci.Handler.(*router.Session); ok {
				link = clientPtr(s.ID)
				app, _ = ci.Conn.Param("application_name")
			}
			// prepared_statements is 0: a server connection's statements
			// belong to the session bound to it, not readable from here.
			rows = append(rows, []any{"S", e.user, e.db.Name, noReplication, state, addr, t.Port, laddr, lport,
				ci.Conn.Created(), ci.LastUsed, 0, 0, ci.CloseNeeded, serverPtr(ci.Conn.ID), link,
				int64(ci.Conn.PID()), tlsText(ci.TLS), app, 0, ci.Conn.ID, t.Gen})
		}
	}
	r.rows("SHOW", columns, rows)
}

// splitAddr gives an address as PgBouncer shows it: IP and port, or
// "unix" and the listening port for a Unix socket.
func splitAddr(a net.Addr, unixPort int) (string, int) {
	switch x := a.(type) {
	case *net.TCPAddr:
		return x.IP.String(), x.Port
	case *net.UnixAddr:
		return "unix", unixPort
	case nil:
		return "", 0
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), 0
	}
	n := 0
	fmt.Sscan(port, &n)
	return host, n
}

func tlsText(on bool) string {
	if on {
		return "TLS"
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (c *Console) showLists(r *reply) {
	sessions := len(c.o.Router.Sessions())
	used := sessions + len(c.consoleConns())
	login := 0
	if c.o.Clients != nil {
		login = max(0, int(c.o.Clients())-used)
	}
	pools, servers := 1, 0
	for _, e := range c.pools() {
		pools++
		servers += e.pool.Stats().Total
	}
	rows := [][]any{
		{"databases", len(c.databases()) + 1},
		{"users", len(c.users())},
		{"peers", len(c.o.Router.Config().Proxy.Peers)},
		{"pools", pools},
		{"peer_pools", 0},
		{"free_clients", 0},
		{"used_clients", used},
		{"login_clients", login},
		{"free_servers", 0},
		{"used_servers", servers},
		{"dns_names", 0},
		{"dns_zones", 0},
		{"dns_queries", 0},
		{"dns_pending", 0},
	}
	r.rows("SHOW", cols(oidText, "list", oidInt4, "items"), rows)
}

// users returns the user names the proxy knows: [users] tables, the
// auth_file, and the users of connected clients and pools, plus PgBouncer's
// "pgbouncer".
func (c *Console) users() []string {
	cfg := c.o.Router.Config()
	set := map[string]bool{adminDB: true}
	for name := range cfg.Users {
		set[name] = true
	}
	if cfg.Proxy.AuthFile != "" {
		if m, err := config.ParseAuthFile(cfg.Proxy.AuthFile); err == nil {
			for name := range m {
				set[name] = true
			}
		}
	}
	for _, s := range c.o.Router.Sessions() {
		set[s.User] = true
	}
	for _, e := range c.pools() {
		set[e.user] = true
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// showUsers answers with PgBouncer 1.25's columns: the user's overrides
// (NULL when not set; pool_size and reserve_pool_size are text, as in
// PgBouncer), its max_user_connections (the [proxy] default when not
// set), and its current server and client connections.
// max_user_client_connections is 0: pauseproxy has no per-user client
// limit.
func (c *Console) showUsers(r *reply) {
	cfg := c.o.Router.Config()
	servers, clients := map[string]int{}, map[string]int{}
	for _, e := range c.pools() {
		servers[e.user] += e.pool.Stats().Total
	}
	for _, s := range c.o.Router.Sessions() {
		clients[s.User]++
	}
	for _, cc := range c.consoleConns() {
		clients[cc.user]++
	}
	var rows [][]any
	for _, name := range c.users() {
		var mode, size any
		maxConns := cfg.Proxy.MaxUserConnections
		if u, ok := cfg.Users[name]; ok {
			if u.PoolMode != "" {
				mode = string(u.PoolMode)
			}
			if u.PoolSize > 0 {
				size = strconv.Itoa(u.PoolSize)
			}
			if u.MaxUserConns > 0 {
				maxConns = u.MaxUserConns
			}
		}
		rows = append(rows, []any{name, size, nil, mode, maxConns, servers[name], 0, clients[name]})
	}
	r.rows("SHOW", cols(oidText, "name", "pool_size", "reserve_pool_size", "pool_mode",
		oidInt4, "max_user_connections", "current_connections", "max_user_client_connections", "current_client_connections"), rows)
}

// showState answers as PgBouncer 1.19+ does: the proxy-wide pause state as
// rows of key and value, so that `psql -tA -c 'SHOW STATE' | grep -q
// 'paused|no'` works. PAUSE of one database does not make the proxy
// "paused" (PgBouncer's meaning); SHOW DATABASES shows it.
func (c *Console) showState(r *reply) {
	paused := c.o.Pauser.PausedAll()
	rows := [][]any{
		{"active", yesNo(!paused)},
		{"paused", yesNo(paused)},
		{"suspended", "no"},
	}
	r.rows("SHOW", cols(oidText, "key", "value"), rows)
}
