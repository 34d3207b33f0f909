package config

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// pgbouncer125Settings are the [pgbouncer] settings of PgBouncer 1.25's
// doc/config.md.
var pgbouncer125Settings = []string{
	// Generic settings.
	"logfile", "pidfile", "listen_addr", "listen_port", "unix_socket_dir",
	"unix_socket_mode", "unix_socket_group", "user", "pool_mode",
	"max_client_conn", "default_pool_size", "min_pool_size",
	"reserve_pool_size", "reserve_pool_timeout", "max_db_connections",
	"max_db_client_connections", "max_user_connections",
	"max_user_client_connections", "server_round_robin",
	"track_extra_parameters", "ignore_startup_parameters", "peer_id",
	"disable_pqexec", "application_name_add_host", "conffile",
	"service_name", "job_name", "stats_period", "max_prepared_statements",
	"scram_iterations",
	// Authentication.
	"auth_type", "auth_hba_file", "auth_ident_file", "auth_file",
	"auth_user", "auth_query", "auth_dbname", "auth_ldap_options",
	// Logging.
	"syslog", "syslog_ident", "syslog_facility", "log_connections",
	"log_disconnections", "log_pooler_errors", "log_stats", "verbose",
	// Console access.
	"admin_users", "stats_users",
	// Connection sanity checks, timeouts.
	"server_reset_query", "server_reset_query_always", "server_check_delay",
	"server_check_query", "server_fast_close", "server_lifetime",
	"server_idle_timeout", "server_connect_timeout", "server_login_retry",
	"client_login_timeout", "autodb_idle_timeout", "dns_max_ttl",
	"dns_nxdomain_ttl", "dns_zone_check_period", "resolv_conf",
	"query_wait_notify",
	// TLS.
	"client_tls_sslmode", "client_tls_key_file", "client_tls_cert_file",
	"client_tls_ca_file", "client_tls_protocols", "client_tls_ciphers",
	"client_tls13_ciphers", "client_tls_ecdhcurve", "client_tls_dheparams",
	"server_tls_sslmode", "server_tls_ca_file", "server_tls_key_file",
	"server_tls_cert_file", "server_tls_protocols", "server_tls_ciphers",
	"server_tls13_ciphers",
	// Dangerous timeouts.
	"query_timeout", "query_wait_timeout", "cancel_wait_timeout",
	"client_idle_timeout", "idle_transaction_timeout", "transaction_timeout",
	"suspend_timeout",
	// Low-level network settings.
	"pkt_buf", "max_packet_size", "listen_backlog", "sbuf_loopcnt",
	"so_reuseport", "tcp_defer_accept", "tcp_socket_buffer", "tcp_keepalive",
	"tcp_keepcnt", "tcp_keepidle", "tcp_keepintvl", "tcp_user_timeout",
}

// docRow is the first cell of a table row: "| `name` |".
var docRow = regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\|")

// docs/migrating-from-pgbouncer.md has a row for every PgBouncer 1.25
// setting and for every name the pgbouncer.ini loader knows, and the
// loader knows every PgBouncer 1.25 setting (none is an "unknown setting"
// error).
func TestMigratingDocCoversTheLoader(t *testing.T) {
	data, err := os.ReadFile("../../docs/migrating-from-pgbouncer.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range docRow.FindAllStringSubmatch(string(data), -1) {
		rows[m[1]] = true
	}
	need := func(what string, names []string) {
		t.Helper()
		for _, n := range names {
			if !rows[n] {
				t.Errorf("docs/migrating-from-pgbouncer.md has no row for %s %s", what, n)
			}
		}
	}
	need("PgBouncer setting", pgbouncer125Settings)
	need("ignored setting", sortedKeys(pgbouncerOnlySettings))
	need("database parameter", iniDatabaseParams)
	need("ignored database parameter", sortedKeys(pgbouncerOnlyDatabaseParams))
	need("user parameter", iniUserParams)
	need("ignored user parameter", sortedKeys(pgbouncerOnlyUserParams))

	for _, s := range pgbouncer125Settings {
		_, ignored := pgbouncerOnlySettings[s]
		known := ignored || slices.ContainsFunc(proxyFields, func(f field[Proxy]) bool { return f.key == s }) ||
			s == "verbose" || s == "max_packet_size" // renamed by the loader
		if !known {
			t.Errorf("PgBouncer 1.25 setting %s is unknown to the pgbouncer.ini loader", s)
		}
	}
}
