package failover

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// Ready is /readyz: the proxy is ready while at least one database can
// serve (or none is configured); the databases that cannot are listed
// either way. One database without a primary must not take the whole
// proxy out of a load balancer while the others serve (a replica-only
// database keeps serving reads through a failover, and a read-write one
// keeps its clients waiting in the hold). Ask ReadyDatabase for one.
func (m *Manager) Ready(ctx context.Context) (bool, []string) {
	return m.r.Ready(ctx, m.readyProblem)
}

// ReadyDatabase is /readyz?database=db: whether db's target is usable now
// (its target role: the verified writable primary, a usable replica, or
// for target_session_attrs = any a server that accepts connections).
// found is false for an unknown database.
func (m *Manager) ReadyDatabase(ctx context.Context, db string) (ok bool, problems []string, found bool) {
	return m.r.ReadyDatabase(ctx, db, m.readyProblem)
}

// readyProblem says why d cannot serve now, or "".
func (m *Manager) readyProblem(ctx context.Context, d *router.Database) string {
	dc := d.Config()
	switch {
	case dc.WantsPrimary():
		e, ok := m.Engine(d.Name)
		if !ok {
			return fmt.Sprintf("database %s: no role-change engine", d.Name)
		}
		st := e.Status()
		if st.Verified != "" {
			return ""
		}
		msg := fmt.Sprintf("database %s: no verified writable primary", d.Name)
		if st.LastErr != nil {
			msg += ": " + st.LastErr.Error()
		} else if st.Snapshot != nil && st.Snapshot.Err != nil {
			msg += ": " + st.Snapshot.Err.Error()
		}
		return msg
	case dc.WantsReplica():
		rs := d.Reads()
		if len(rs.Replicas) > 0 {
			return ""
		}
		if dc.TargetSessionAttrs == config.TargetPreferStandby && m.primaryKnown(d.Name) {
			return ""
		}
		return fmt.Sprintf("database %s: no usable replica (target_session_attrs = %s)", d.Name, dc.TargetSessionAttrs)
	default:
		t := d.Target()
		if err := m.reach(ctx, t.Host, t.Port); err != nil {
			return fmt.Sprintf("database %s: server %s:%d does not accept connections: %v", d.Name, t.Host, t.Port, err)
		}
		return ""
	}
}

// primaryKnown reports whether db's source names a primary.
func (m *Manager) primaryKnown(db string) bool {
	m.mu.Lock()
	me, ok := m.engines[db]
	m.mu.Unlock()
	if !ok || me.reads == nil {
		return false
	}
	return me.reads.src.Snapshot().Primary != nil
}

// reach connects to host:port (no login), reusing an answer for a second:
// /readyz may be asked often.
func (m *Manager) reach(ctx context.Context, host string, port int) error {
	network, addr := "tcp", net.JoinHostPort(host, strconv.Itoa(port))
	if strings.HasPrefix(host, "/") {
		network, addr = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", host, port)
	}
	key := network + " " + addr
	m.reachMu.Lock()
	if r, ok := m.reachCache[key]; ok && time.Since(r.at) < time.Second {
		m.reachMu.Unlock()
		return r.err
	}
	m.reachMu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(dctx, network, addr)
	if err == nil {
		c.Close()
	}
	m.reachMu.Lock()
	if m.reachCache == nil {
		m.reachCache = make(map[string]reachResult)
	}
	m.reachCache[key] = reachResult{at: time.Now(), err: err}
	m.reachMu.Unlock()
	return err
}

type reachResult struct {
	at  time.Time
	err error
}
