package config

import (
	"strconv"
	"strings"
)

// This file lists what pgbouncer.ini may say that pauseproxy does not
// implement (PgBouncer's doc/config.md). Those settings warn instead of
// failing, so an existing file loads; anything not listed here nor in the
// schema is an unknown setting, an error like a typo.

// unsupported is a PgBouncer setting pauseproxy ignores.
type unsupported struct {
	// sameAs lists values meaning what pauseproxy does anyway; with one of
	// them the setting is accepted silently. Empty: always warn.
	sameAs []string
	// reason is shown in the warning, when there is more to say.
	reason string
}

// silent reports whether value means what pauseproxy does anyway.
func (u unsupported) silent(value string) bool {
	value = strings.ToLower(strings.TrimSpace(value))
	for _, s := range u.sameAs {
		if s == "*" || s == value {
			return true
		}
		// Seconds may be written 0, 0.0, ...
		a, errA := strconv.ParseFloat(s, 64)
		b, errB := strconv.ParseFloat(value, 64)
		if errA == nil && errB == nil && a == b {
			return true
		}
	}
	return false
}

func (u unsupported) why() string {
	if u.reason == "" {
		return ""
	}
	return " (" + u.reason + ")"
}

// pgbouncerOnlySettings are the [pgbouncer] settings without a pauseproxy
// equivalent. verbose and max_packet_size are not here: they map to
// log_level and max_message_size.
var pgbouncerOnlySettings = map[string]unsupported{
	// Process and logging plumbing: pauseproxy runs in the foreground and
	// logs to stderr through log/slog, one line per connection event.
	"logfile":           {reason: "pauseproxy logs to stderr"},
	"pidfile":           {reason: "pauseproxy does not daemonize"},
	"user":              {reason: "run pauseproxy as the intended user"},
	"syslog":            {sameAs: []string{"0"}, reason: "pauseproxy logs to stderr"},
	"syslog_ident":      {},
	"syslog_facility":   {},
	"log_pooler_errors": {sameAs: []string{"1"}, reason: "pauseproxy always logs errors sent to clients"},
	"log_stats":         {sameAs: []string{"0"}, reason: "pauseproxy exports Prometheus metrics instead"},
	"stats_period":      {reason: "pauseproxy exports Prometheus metrics instead"},
	// PgBouncer's own record of its config file, and Windows service names.
	"conffile":     {sameAs: []string{"*"}},
	"service_name": {sameAs: []string{"*"}},
	"job_name":     {sameAs: []string{"*"}},

	// Sockets and the network: Go's defaults apply.
	"unix_socket_mode":      {},
	"unix_socket_group":     {},
	"listen_backlog":        {},
	"so_reuseport":          {sameAs: []string{"0"}, reason: "pauseproxy uses every core in one process"},
	"pkt_buf":               {},
	"sbuf_loopcnt":          {},
	"tcp_defer_accept":      {},
	"tcp_socket_buffer":     {},
	"tcp_keepalive":         {reason: "pauseproxy always enables TCP keepalive on client connections, with the operating system's timings"},
	"tcp_keepcnt":           {},
	"tcp_keepidle":          {},
	"tcp_keepintvl":         {},
	"tcp_user_timeout":      {sameAs: []string{"0"}},
	"dns_max_ttl":           {reason: "host names are resolved at each connect"},
	"dns_nxdomain_ttl":      {reason: "host names are resolved at each connect"},
	"dns_zone_check_period": {sameAs: []string{"0"}},
	"resolv_conf":           {},

	// Pooling knobs pauseproxy does not have.
	"server_round_robin":          {},
	"server_check_query":          {reason: "pauseproxy checks servers its own way"},
	"server_check_delay":          {reason: "pauseproxy checks servers its own way"},
	"server_fast_close":           {},
	"autodb_idle_timeout":         {},
	"pool_idle_timeout":           {sameAs: []string{"0"}},
	"track_extra_parameters":      {},
	"disable_pqexec":              {sameAs: []string{"0"}},
	"max_db_client_connections":   {sameAs: []string{"0"}},
	"max_user_client_connections": {sameAs: []string{"0"}},
	"query_wait_notify":           {},
	"cancel_wait_timeout":         {},
	"suspend_timeout":             {sameAs: []string{"*"}}, // only for PgBouncer's online restart
	"login_notify_message":        {sameAs: []string{""}},

	// Authentication that pauseproxy does not do (auth_type ldap, pam and
	// cert are rejected by validation).
	"auth_ident_file":   {},
	"auth_ldap_options": {},
	"scram_iterations":  {sameAs: []string{"4096"}},

	// TLS tuning: Go's crypto/tls chooses, with TLS 1.2 as the minimum
	// (PgBouncer's "secure") and its own cipher suites (what PgBouncer's
	// "default", "secure", "fast" and "normal" leave to the library).
	"client_tls_protocols": {sameAs: []string{"secure", "tlsv1.2,tlsv1.3"}},
	"server_tls_protocols": {sameAs: []string{"secure", "tlsv1.2,tlsv1.3"}},
	"client_tls_ciphers":   {sameAs: []string{"default", "secure", "fast", "normal"}},
	"server_tls_ciphers":   {sameAs: []string{"default", "secure", "fast", "normal"}},
	"client_tls13_ciphers": {sameAs: []string{""}},
	"server_tls13_ciphers": {sameAs: []string{""}},
	"client_tls_ecdhcurve": {sameAs: []string{"auto"}},
	"client_tls_dheparams": {sameAs: []string{"none"}, reason: "Go does not offer DHE key exchange"},
}

// iniDatabaseParams are the [databases] connection parameters pauseproxy
// reads, named as its database keys (reserve_pool_size is read as
// reserve_pool). host may be a list.
var iniDatabaseParams = []string{
	"host", "port", "dbname", "user", "password", "pool_size", "pool_mode",
	"min_pool_size", "reserve_pool", "max_db_connections", "connect_query",
	"auth_user", "auth_dbname", "application_name", "target_session_attrs",
}

// pgbouncerOnlyDatabaseParams are PgBouncer's other [databases]
// parameters, ignored with a warning (the value says why, or is empty).
var pgbouncerOnlyDatabaseParams = map[string]string{
	"client_encoding":           " (the client's own startup parameter applies)",
	"datestyle":                 " (the client's own startup parameter applies)",
	"timezone":                  " (the client's own startup parameter applies)",
	"auth_query":                " (set auth_query in [pgbouncer])",
	"load_balance_hosts":        "",
	"max_db_client_connections": "",
	"server_lifetime":           " (set server_lifetime in [pgbouncer])",
	"query_wait_timeout":        " (set query_wait_timeout in [pgbouncer])",
}

// iniUserParams are the [users] settings pauseproxy reads.
var iniUserParams = []string{"pool_mode", "max_user_connections", "pool_size"}

// pgbouncerOnlyUserParams are PgBouncer's other [users] settings.
var pgbouncerOnlyUserParams = map[string]string{
	"reserve_pool_size":           "",
	"query_timeout":               " (set query_timeout in [pgbouncer])",
	"query_wait_timeout":          " (set query_wait_timeout in [pgbouncer])",
	"idle_transaction_timeout":    " (set idle_transaction_timeout in [pgbouncer])",
	"transaction_timeout":         "",
	"client_idle_timeout":         " (set client_idle_timeout in [pgbouncer])",
	"max_user_client_connections": "",
}
