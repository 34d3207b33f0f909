package config

import (
	"strconv"
	"strings"
	"time"
)

// targetSessionAttrs are the values of target_session_attrs.
var targetSessionAttrs = []string{TargetReadWrite, TargetPrimary, TargetReadOnly, TargetStandby, TargetPreferStandby, TargetAny}

// validateReads checks target_session_attrs, read_only_routing and
// max_replica_lag, and fills MaxReplicaLagBytes or MaxReplicaLagTime.
func (b *builder) validateReads(d *Database, set map[string]bool) {
	key := func(k string) string { return keyOf([]string{"databases", d.Name}, k) }
	b.oneOf(key("target_session_attrs"), d.TargetSessionAttrs, targetSessionAttrs)
	b.oneOf(key("read_only_routing"), d.ReadOnlyRouting, []string{RoutePrimary, RouteReplica})
	if set["read_only"] && d.ReadOnly && set["target_session_attrs"] && d.WantsPrimary() {
		b.problem(key("read_only"), "read_only = true contradicts target_session_attrs = %q", d.TargetSessionAttrs)
	}
	if d.ReadOnlyRouting == RouteReplica && !d.WantsPrimary() {
		b.problem(key("read_only_routing"), `"replica" splits a read-write database; this one's target_session_attrs is %q`, d.TargetSessionAttrs)
	}
	if d.MaxReplicaLag == "" {
		return
	}
	n, dur, ok := parseReplicaLag(d.MaxReplicaLag)
	if !ok {
		b.problem(key("max_replica_lag"), `want bytes ("16MB", "1048576") or a duration ("10s"), got %q`, d.MaxReplicaLag)
		return
	}
	d.MaxReplicaLagBytes, d.MaxReplicaLagTime = n, dur
	if !d.WantsReplica() && !d.RoutesReadsToReplicas() {
		b.warn(key("max_replica_lag"), "this database does not read from replicas (target_session_attrs = %q, read_only_routing = %q): not applied", d.TargetSessionAttrs, d.ReadOnlyRouting)
		return
	}
	if n > 0 && d.Discovery == DiscoveryStatic {
		// pg_is_in_recovery() and the replay timestamp are all a static
		// host list can ask each host.
		b.warn(key("max_replica_lag"), "static hosts report replication lag as a duration, not bytes: give a duration like \"10s\"; not applied")
	}
	if dur > 0 && d.Discovery != DiscoveryStatic {
		// Patroni's /cluster and Consul report lag in bytes only.
		b.warn(key("max_replica_lag"), "%s reports replication lag in bytes, not time: only a static hosts list can measure a duration; not applied", d.Discovery)
	}
}

// parseReplicaLag reads max_replica_lag: a byte count with an optional
// unit (B, kB, MB, GB, as PostgreSQL writes sizes: powers of 1024) or a
// duration.
func parseReplicaLag(s string) (bytes int64, d time.Duration, ok bool) {
	s = strings.TrimSpace(s)
	if dur, err := time.ParseDuration(s); err == nil && dur > 0 {
		return 0, dur, true
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, 0, false
	}
	return n * mult, 0, true
}
