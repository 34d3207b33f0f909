package admin

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// SHOW TOPOLOGY and SHOW EVENTS: pauseproxy's own views, with no PgBouncer
// counterpart.

// showTopology is SHOW TOPOLOGY [db]: one row per database with what
// discovery knows (source, primary, timeline, replicas with their state
// and lag, generation, last change), where the pools dial now, and the
// primary the role-change engine verified writable ("verified", NULL while
// none: the operator commands wait on it). Without a discovery source
// (static targets, or no Topology wired) the row shows the pools' target as
// the primary and no verified address.
func (c *Console) showTopology(args []token, r *reply) error {
	db, rest := optionalDB(args)
	if len(rest) > 0 {
		return errSyntax
	}
	columns := cols(oidText, "database", "source", "endpoint", "primary", "primary_addr",
		oidInt8, "timeline", oidText, "replicas", oidInt8, "generation", oidInt4, "changing",
		oidText, "last_change", "updated", "target", oidInt8, "target_generation", oidText, "error", "verified",
		"target_session_attrs", "read_only_routing", "read_replicas")
	var rows [][]any
	found := false
	for _, d := range c.databases() {
		if db != "" && d.Name != db {
			continue
		}
		found = true
		t := d.Target()
		target := ""
		if t.Host != "" {
			target = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
		}
		dc := d.Config()
		if dc.WantsReplica() {
			target = "(replicas)"
		}
		reads := []any{dc.TargetSessionAttrs, dc.ReadOnlyRouting, nil}
		if d.UsesReplicas() {
			reads[2] = readsText(d.Reads())
		}
		var snap *discovery.Snapshot
		var verified string
		var lastChange time.Time
		ok := false
		if c.o.Topology != nil {
			snap, verified, lastChange, ok = c.o.Topology.Topology(d.Name)
		}
		if !ok || snap == nil {
			rows = append(rows, append([]any{d.Name, "static", nil, nilIfEmpty(target), nilIfEmpty(target),
				nil, "", t.Gen, false, nil, nil, nilIfEmpty(target), t.Gen, nil, nil}, reads...))
			continue
		}
		var primary, primaryAddr, timeline any
		if p := snap.Primary; p != nil {
			primary, primaryAddr, timeline = p.Name, p.Addr(), p.Timeline
		}
		var errText any
		if snap.Err != nil {
			errText = snap.Err.Error()
		}
		rows = append(rows, append([]any{d.Name, snap.Source, nilIfEmpty(snap.Endpoint), primary, primaryAddr,
			timeline, replicasText(snap.Replicas), snap.Generation, snap.Changing, lastChange, snap.Updated,
			nilIfEmpty(target), t.Gen, errText, nilIfEmpty(verified)}, reads...))
	}
	if db != "" && !found {
		return errorf("3D000", "no such database: %s", db)
	}
	r.rows("SHOW", columns, rows)
	return nil
}

// replicasText lists replicas as "name addr state lag=N" separated by "; ",
// with Patroni's nofailover/noloadbalance tags when set.
func replicasText(ms []discovery.Member) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		lag := "lag=?"
		if m.LagBytes >= 0 {
			lag = fmt.Sprintf("lag=%dB", m.LagBytes)
		}
		if m.ReplayDelay > 0 {
			lag += fmt.Sprintf(" delay=%s", m.ReplayDelay.Round(time.Millisecond))
		}
		if m.NoFailover {
			lag += " nofailover"
		}
		if m.NoLoadBalance {
			lag += " noloadbalance"
		}
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", m.Name, m.Addr(), m.State, lag)))
	}
	return strings.Join(parts, "; ")
}

// readsText lists the replicas reads use, each with the server
// connections open to it: "127.0.0.1:5433 (2 open); ...".
func readsText(rs router.ReadState) string {
	parts := make([]string, 0, len(rs.Replicas))
	for _, a := range rs.Replicas {
		parts = append(parts, fmt.Sprintf("%s (%d open)", a, rs.Open[a]))
	}
	return strings.Join(parts, "; ")
}

// showEvents is SHOW EVENTS: the event log, oldest first.
func (c *Console) showEvents(r *reply) {
	columns := cols(oidText, "time", "kind", "database", "reason", oidNumeric, "duration", oidText, "outcome", "detail")
	var rows [][]any
	for _, e := range c.o.Events.List() {
		db := e.Database
		if db == "" {
			db = "*"
		}
		rows = append(rows, []any{e.Time.UTC().Format("2006-01-02 15:04:05.000 MST"), e.Kind, db,
			e.Reason, e.Duration, e.Outcome, e.Detail})
	}
	r.rows("SHOW", columns, rows)
}
