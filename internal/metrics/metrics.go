// Package metrics exports pauseproxy's state to Prometheus: clients and
// server connections by state, holds and pauses, transactions, queries and
// bytes, wait and transaction time histograms, role changes by kind and
// hold durations by reason, errors sent to clients by SQLSTATE, the
// verified primary, the configured limits, discovery health and retries.
//
// Nothing here sits on the path of a transaction. Gauges and counters are
// read from the router, the pools and the Pauser when Prometheus scrapes
// (a custom Collector); the two timing histograms are kept by the router
// itself (router.Histogram, lock-free) and converted at scrape time, and
// so are the client error counts (router.ErrorCounts); what happens once
// in a while (role changes, holds ending, PAUSE outcomes) arrives through a
// subscription to admin.Events.
//
// The series an alert is written on exist from the start, at zero: every
// hold reason, every role change kind of every database, every PAUSE and
// SWITCHOVER outcome. A counter that appears only at its first increment
// is invisible to increase() and rate() over that first change.
//
// Names follow Prometheus conventions: the pauseproxy_ prefix, _total for
// counters, _seconds and _bytes units; labels are low-cardinality
// (database, user, state, reason, kind, outcome, and sqlstate, bounded to
// a fixed list of codes and the SQLSTATE classes). Everything is
// registered on a registry passed in, never the global one.
package metrics

import (
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// Options say where the metrics come from. Router is required.
type Options struct {
	Router *router.Router
	// Pauser gives the proxy-wide pause state; nil leaves
	// pauseproxy_paused_all out.
	Pauser *admin.Pauser
	// Events feeds the role-change, hold and pause metrics; nil leaves
	// them at zero.
	Events *admin.Events
	// Discovery reports discovery errors, last success and retries; nil
	// until the role-change engine provides it.
	Discovery Discovery
	// Topology names each managed database's verified primary
	// (pauseproxy_primary_verified, pauseproxy_primary_info); nil treats
	// every database as static.
	Topology admin.Topology
	// Clients counts connected clients, logged in or logging in
	// (proxy.Server.Clients); nil leaves pauseproxy_clients_login out.
	Clients func() int64
	// Version labels pauseproxy_build_info.
	Version string
	// Console counts the errors sent to admin console clients
	// (admin.Console); nil leaves them out of
	// pauseproxy_client_errors_total.
	Console ConsoleErrors
}

// ConsoleErrors is implemented by admin.Console.
type ConsoleErrors interface {
	ClientErrors() map[string]uint64
}

// DiscoveryStats is what discovery and the role-change engine report for
// one database.
type DiscoveryStats struct {
	Database string
	// Errors counts failed discovery polls since the start.
	Errors uint64
	// LastSuccess is when discovery last had an answer; zero if never.
	LastSuccess time.Time
	// Retries counts what the role-change engine retried after a failure:
	// dials and liveness checks of a new primary.
	Retries uint64
	// SplitBrain is true while more than one node accepts writes (the
	// previous primary after a change, or the hosts of a static list).
	SplitBrain bool
}

// Discovery is implemented by the role-change engine.
type Discovery interface {
	DiscoveryStats() []DiscoveryStats
}

// NewRegistry returns a registry holding pauseproxy's metrics and the Go
// runtime and process collectors.
func NewRegistry(o Options) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	if err := Register(reg, o); err != nil {
		return nil, err
	}
	return reg, nil
}

// Register adds pauseproxy's metrics to reg.
func Register(reg prometheus.Registerer, o Options) error {
	ev := newEventMetrics()
	c := newCollector(o, ev)
	if err := reg.Register(c); err != nil {
		return err
	}
	for _, col := range ev.collectors() {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	if o.Events != nil {
		o.Events.Subscribe(ev.observe)
	}
	return nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("pauseproxy_"+name, help, labels, nil)
}

// collector reads the router's state at scrape time.
type collector struct {
	o  Options
	ev *eventMetrics

	buildInfo, clients, clientsLogin, servers, heldClients, maxWait     *prometheus.Desc
	paused, pausedAll, held, disabled                                   *prometheus.Desc
	xacts, queries, received, sent, xactTime, waitTime                  *prometheus.Desc
	discoveryErrors, discoveryLastSuccess, retries, poolSize, gen, hold *prometheus.Desc
	listenerReconnects                                                  *prometheus.Desc
	splitBrain                                                          *prometheus.Desc
	roleChanges, clientErrors, primaryVerified, primaryInfo             *prometheus.Desc
	maxClientConn, reservePool, minPoolSize, maxDBConns, maxUserConns   *prometheus.Desc
	targetRole, readReplicas                                            *prometheus.Desc
}

// noDatabase labels client errors of logins refused before they named a
// known database (PgBouncer's "(nodb)" in SHOW CLIENTS).
const noDatabase = "(nodb)"

// consoleDatabase labels the errors of admin console clients: the name
// the console has in SHOW DATABASES.
const consoleDatabase = "pgbouncer"

func newCollector(o Options, ev *eventMetrics) *collector {
	return &collector{
		o:                    o,
		ev:                   ev,
		roleChanges:          desc("role_changes_total", "Role-change cycles that ended on a verified primary, by kind: failover (the primary moved), switchover (it moved after a planned switchover was announced), restart (same address: restarted in place). Every database has every kind from the start.", "database", "kind"),
		clientErrors:         desc("client_errors_total", "ErrorResponses sent to clients, forwarded from a server or made by the proxy (logins refused included), by SQLSTATE: the full code for the common ones (see docs/admin.md), the class as 42XXX otherwise. database is (nodb) for a login refused before it named a known database.", "database", "sqlstate"),
		primaryVerified:      desc("primary_verified", "1 while the database's primary is verified writable by the role-change engine, 0 while it has none (no primary yet, or a role change under way). Only databases with discovery.", "database"),
		primaryInfo:          desc("primary_info", "The address (host:port) new server connections of the database go to: the verified primary (discovery) or the configured target (static). Always 1; absent while a managed database has no verified primary.", "database", "address"),
		maxClientConn:        desc("max_client_conn", "max_client_conn: the most client connections the proxy accepts (0: no limit)."),
		reservePool:          desc("reserve_pool_size", "The database's reserve_pool_size: extra server connections when clients wait longer than reserve_pool_timeout.", "database"),
		minPoolSize:          desc("min_pool_size", "The database's min_pool_size.", "database"),
		maxDBConns:           desc("max_db_connections", "The database's max_db_connections: server connections across its pools (0: no limit).", "database"),
		maxUserConns:         desc("max_user_connections", "A configured user's max_user_connections: server connections across its pools (0: no limit).", "user"),
		buildInfo:            desc("build_info", "pauseproxy's version; always 1.", "version"),
		clients:              desc("clients", "Logged-in client connections by state: active (a server connection is bound), idle, waiting (for a server connection, in a hold or a full pool).", "database", "user", "state"),
		clientsLogin:         desc("clients_login", "Client connections still logging in (console clients included)."),
		servers:              desc("servers", "Server connections by state: active (bound to a client), idle, login (being dialed).", "database", "user", "state"),
		heldClients:          desc("held_clients", "Clients waiting because their database is held (PAUSE or a role change).", "database"),
		maxWait:              desc("pool_max_wait_seconds", "How long the oldest client waiting for a server connection of the pool has waited.", "database", "user"),
		paused:               desc("paused", "1 while the database is paused by PAUSE (console, signal or HTTP).", "database"),
		pausedAll:            desc("paused_all", "1 while the proxy-wide PAUSE (without a database name, or SIGUSR1) is in force."),
		held:                 desc("held", "1 for each reason holding the database's new transactions (pause, role-change, ...).", "database", "reason"),
		disabled:             desc("disabled", "1 while the database refuses new clients (DISABLE).", "database"),
		poolSize:             desc("pool_size", "The database's pool_size: server connections per user.", "database"),
		targetRole:           desc("database_target", "1, labelled with the database's target_session_attrs (read-write, read-only, any, ...) and read_only_routing.", "database", "target_session_attrs", "read_only_routing"),
		readReplicas:         desc("read_replicas", "Replicas the database's reads use now (usable: role, state, lag and tags allow); only for databases that read from replicas.", "database"),
		gen:                  desc("target_generation", "Generation of the database's target; it moves each time the pools are pointed elsewhere (or RECONNECT).", "database"),
		hold:                 desc("hold_timeout_seconds", "hold_timeout: the longest one transaction waits in a hold."),
		xacts:                desc("transactions_total", "Transactions (in session mode, sessions) that got a server connection and ended.", "database"),
		queries:              desc("queries_total", "Statements completed (CommandComplete from the server).", "database"),
		received:             desc("received_bytes_total", "Bytes received from clients.", "database"),
		sent:                 desc("sent_bytes_total", "Bytes sent to clients by servers.", "database"),
		xactTime:             desc("transaction_duration_seconds", "Time a client held a server connection, from getting it to the end of its transaction.", "database"),
		waitTime:             desc("client_wait_seconds", "Time a client waited for a server connection (in a hold or a full pool) before its transaction.", "database"),
		discoveryErrors:      desc("discovery_errors_total", "Failed discovery polls.", "database"),
		discoveryLastSuccess: desc("discovery_last_success_timestamp_seconds", "Unix time of discovery's last successful answer.", "database"),
		retries:              desc("retries_total", "Dials and checks of a new primary that the role-change engine retried.", "database"),
		listenerReconnects:   desc("listener_reconnects_total", "Reconnections of the LISTEN listener connection (transaction mode); notifications sent meanwhile may have been lost.", "database"),
		splitBrain:           desc("split_brain", "1 while more than one node of the database accepts writes (the previous primary after a change, or two hosts of a static list); see on_split_brain.", "database"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.clients, c.clientsLogin, c.servers, c.heldClients, c.maxWait,
		c.targetRole, c.readReplicas,
		c.paused, c.pausedAll, c.held, c.disabled, c.poolSize, c.gen, c.hold, c.xacts, c.queries, c.received,
		c.sent, c.xactTime, c.waitTime, c.discoveryErrors, c.discoveryLastSuccess, c.retries, c.listenerReconnects, c.splitBrain,
		c.roleChanges, c.clientErrors, c.primaryVerified, c.primaryInfo,
		c.maxClientConn, c.reservePool, c.minPoolSize, c.maxDBConns, c.maxUserConns} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	r := c.o.Router
	cfg := r.Config()
	gauge(c.buildInfo, 1, c.o.Version)
	gauge(c.hold, cfg.Proxy.HoldTimeout.Seconds())
	gauge(c.maxClientConn, float64(cfg.Proxy.MaxClientConn))
	for name, u := range cfg.Users {
		gauge(c.maxUserConns, float64(u.MaxUserConns), name)
	}
	for code, n := range r.LoginErrors() {
		counter(c.clientErrors, float64(n), noDatabase, code)
	}
	if c.o.Console != nil {
		for code, n := range c.o.Console.ClientErrors() {
			counter(c.clientErrors, float64(n), consoleDatabase, code)
		}
	}

	// Clients by database, user and state: every state of a pair that has
	// clients, zeros included, so that a state emptying shows as 0
	// rather than vanishing.
	type pair struct{ db, user string }
	clients := map[pair]map[string]int{}
	loggedIn := 0
	for _, s := range r.Sessions() {
		k := pair{s.DBName, s.User}
		if clients[k] == nil {
			clients[k] = map[string]int{}
		}
		clients[k][s.Info().State]++
		loggedIn++
	}
	for k, states := range clients {
		for _, state := range []string{"active", "idle", "waiting"} {
			gauge(c.clients, float64(states[state]), k.db, k.user, state)
		}
	}
	if c.o.Clients != nil {
		gauge(c.clientsLogin, float64(max(0, c.o.Clients()-int64(loggedIn))))
	}
	if c.o.Pauser != nil {
		gauge(c.pausedAll, b2f(c.o.Pauser.PausedAll()))
	}

	for _, d := range r.Databases() {
		if d.Name == "*" {
			continue
		}
		name := d.Name
		heldClients := 0
		for user, p := range d.Pools() {
			st := p.Stats()
			gauge(c.servers, float64(st.Active), name, user, "active")
			gauge(c.servers, float64(st.Idle), name, user, "idle")
			gauge(c.servers, float64(st.Dialing), name, user, "login")
			gauge(c.maxWait, st.MaxWait.Seconds(), name, user)
			if st.Held {
				heldClients += st.Waiting
			}
		}
		gauge(c.heldClients, float64(heldClients), name)
		_, reasons := d.Held()
		gauge(c.paused, b2f(slices.Contains(reasons, admin.PauseReason)), name)
		for _, reason := range reasons {
			gauge(c.held, 1, name, reason)
		}
		gauge(c.disabled, b2f(d.Disabled()), name)
		dc := d.Config()
		gauge(c.poolSize, float64(dc.PoolSize), name)
		gauge(c.reservePool, float64(dc.ReservePool), name)
		gauge(c.minPoolSize, float64(dc.MinPoolSize), name)
		gauge(c.maxDBConns, float64(dc.MaxDBConns), name)
		t := d.Target()
		gauge(c.gen, float64(t.Gen), name)
		c.collectPrimary(ch, d)
		for _, kind := range changeKinds {
			counter(c.roleChanges, float64(c.ev.roleChanges(name, kind)), name, kind)
		}
		gauge(c.targetRole, 1, name, dc.TargetSessionAttrs, dc.ReadOnlyRouting)
		if d.UsesReplicas() {
			gauge(c.readReplicas, float64(len(d.Reads().Replicas)), name)
		}

		st := d.Stats()
		counter(c.xacts, float64(st.Xacts.Load()), name)
		counter(c.queries, float64(st.Queries.Load()), name)
		counter(c.received, float64(st.Received.Load()), name)
		counter(c.sent, float64(st.Sent.Load()), name)
		counter(c.listenerReconnects, float64(st.ListenerReconnects.Load()), name)
		for code, n := range st.ClientErrors.Snapshot() {
			counter(c.clientErrors, float64(n), name, code)
		}
		ch <- histogram(c.xactTime, st.XactTimes.Snapshot(), name)
		ch <- histogram(c.waitTime, st.WaitTimes.Snapshot(), name)
	}

	if c.o.Discovery != nil {
		for _, ds := range c.o.Discovery.DiscoveryStats() {
			counter(c.discoveryErrors, float64(ds.Errors), ds.Database)
			counter(c.retries, float64(ds.Retries), ds.Database)
			split := 0.0
			if ds.SplitBrain {
				split = 1
			}
			gauge(c.splitBrain, split, ds.Database)
			if !ds.LastSuccess.IsZero() {
				gauge(c.discoveryLastSuccess, float64(ds.LastSuccess.UnixNano())/1e9, ds.Database)
			}
		}
	}
}

// collectPrimary reports where database d's new server connections go.
func (c *collector) collectPrimary(ch chan<- prometheus.Metric, d *router.Database) {
	if c.o.Topology != nil {
		if _, verified, _, ok := c.o.Topology.Topology(d.Name); ok {
			ch <- prometheus.MustNewConstMetric(c.primaryVerified, prometheus.GaugeValue, b2f(verified != ""), d.Name)
			if verified != "" {
				ch <- prometheus.MustNewConstMetric(c.primaryInfo, prometheus.GaugeValue, 1, d.Name, verified)
			}
			return
		}
	}
	t := d.Target()
	if t.Host == "" {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.primaryInfo, prometheus.GaugeValue, 1, d.Name, net.JoinHostPort(t.Host, strconv.Itoa(t.Port)))
}

// histogram converts a router histogram to a Prometheus one.
func histogram(d *prometheus.Desc, s router.HistogramSnapshot, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(router.TimeBuckets))
	for i, b := range router.TimeBuckets {
		buckets[b.Seconds()] = s.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), buckets, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
