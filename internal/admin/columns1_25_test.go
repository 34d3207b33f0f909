package admin_test

import (
	"slices"
	"strings"
	"testing"
)

// pgbouncer125 are PgBouncer 1.25's result columns, as its src/admin.c and
// src/stats.c write them (pktbuf_write_RowDescription) and doc/usage.md
// documents them, with the format letters that give their types: s text,
// i int4, q int8, N numeric, T a timestamp sent as text.
var pgbouncer125 = []struct {
	cmd, format string
	columns     []string
}{
	{"SHOW DATABASES", "ssissiiiissiiiiii", []string{"name", "host", "port", "database", "force_user",
		"pool_size", "min_pool_size", "reserve_pool_size", "server_lifetime", "pool_mode", "load_balance_hosts",
		"max_connections", "current_connections", "max_client_connections", "current_client_connections",
		"paused", "disabled"}},
	{"SHOW POOLS", "ssiiiiiiiiiiiiiss", []string{"database", "user", "cl_active", "cl_waiting",
		"cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled",
		"sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode", "load_balance_hosts"}},
	{"SHOW CLIENTS", "ssssssisiTTiiississii", socketColumns125},
	{"SHOW SERVERS", "ssssssisiTTiiississii", socketColumns125},
	{"SHOW USERS", "ssssiiii", []string{"name", "pool_size", "reserve_pool_size", "pool_mode",
		"max_user_connections", "current_connections", "max_user_client_connections", "current_client_connections"}},
	{"SHOW STATS", "s" + strings.Repeat("N", 22), []string{"database",
		"total_server_assignment_count", "total_xact_count", "total_query_count", "total_received", "total_sent",
		"total_xact_time", "total_query_time", "total_wait_time",
		"total_client_parse_count", "total_server_parse_count", "total_bind_count",
		"avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
		"avg_xact_time", "avg_query_time", "avg_wait_time",
		"avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"}},
	{"SHOW STATS_TOTALS", "s" + strings.Repeat("N", 11), []string{"database",
		"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
		"xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"}},
	{"SHOW STATS_AVERAGES", "s" + strings.Repeat("N", 11), []string{"database",
		"server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
		"xact_time", "query_time", "wait_time", "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"}},
	{"SHOW TOTALS", "sN", []string{"name", "value"}},
	{"SHOW LISTS", "si", []string{"list", "items"}},
	{"SHOW PEERS", "isii", []string{"peer_id", "host", "port", "pool_size"}},
	{"SHOW PEER_POOLS", "iiiii", []string{"peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel", "sv_login"}},
	{"SHOW STATE", "ss", []string{"key", "value"}},
	{"SHOW CONFIG", "ssss", []string{"key", "value", "default", "changeable"}},
	{"SHOW MEM", "siiii", []string{"name", "size", "used", "free", "memtotal"}},
	{"SHOW DNS_HOSTS", "sqs", []string{"hostname", "ttl", "addrs"}},
	{"SHOW DNS_ZONES", "sqi", []string{"zonename", "serial", "count"}},
}

var socketColumns125 = []string{"type", "user", "database", "replication", "state", "addr", "port",
	"local_addr", "local_port", "connect_time", "request_time", "wait", "wait_us", "close_needed",
	"ptr", "link", "remote_pid", "tls", "application_name", "prepared_statements", "id"}

// formatOID is the type OID a PgBouncer format letter gives a column.
var formatOID = map[byte]uint32{'s': 25, 'T': 25, 'i': 23, 'q': 20, 'N': 1700}

// A script written for PgBouncer 1.25 finds 1.25's columns, in 1.25's
// order and with its types, before any of pauseproxy's own.
func TestShowColumnsOfPgBouncer125(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	openTransaction(t, p.Port)
	c := console(t, p.Port, adminUser, adminPass)
	for _, want := range pgbouncer125 {
		t.Run(want.cmd, func(t *testing.T) {
			if len(want.format) != len(want.columns) {
				t.Fatalf("test table: %d format letters for %d columns", len(want.format), len(want.columns))
			}
			got := one(t, c, want.cmd)
			if len(got.Columns) < len(want.columns) || !slices.Equal(got.Columns[:len(want.columns)], want.columns) {
				t.Fatalf("columns\n ours:           %v\n PgBouncer 1.25: %v", got.Columns, want.columns)
			}
			for i := range want.columns {
				if oid := formatOID[want.format[i]]; got.OIDs[i] != oid {
					t.Errorf("column %s has type %d, PgBouncer 1.25 %d", want.columns[i], got.OIDs[i], oid)
				}
			}
			for _, row := range got.Rows {
				if len(row) != len(got.Columns) {
					t.Fatalf("row %v has %d values for %d columns", row, len(row), len(got.Columns))
				}
			}
		})
	}

	// Row names of SHOW LISTS and SHOW TOTALS, as exporters read them.
	rowNames := func(cmd string) []string {
		var out []string
		for _, r := range one(t, c, cmd).Rows {
			out = append(out, r[0])
		}
		return out
	}
	if got, want := rowNames("SHOW LISTS"), []string{"databases", "users", "peers", "pools", "peer_pools",
		"free_clients", "used_clients", "login_clients", "free_servers", "used_servers",
		"dns_names", "dns_zones", "dns_queries", "dns_pending"}; !slices.Equal(got, want) {
		t.Errorf("SHOW LISTS rows\n ours:           %v\n PgBouncer 1.25: %v", got, want)
	}
	var totals []string
	for _, prefix := range []string{"total_", "avg_"} {
		for _, n := range []string{"server_assignment_count", "xact_count", "query_count", "client_bytes", "server_bytes",
			"xact_time", "query_time", "wait_time", "ps_client_parse_count", "ps_server_parse_count", "ps_bind_count"} {
			totals = append(totals, prefix+n)
		}
	}
	if got := rowNames("SHOW TOTALS"); !slices.Equal(got, totals) {
		t.Errorf("SHOW TOTALS rows\n ours:           %v\n PgBouncer 1.25: %v", got, totals)
	}
}
