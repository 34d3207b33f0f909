package admin

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/router"
)

// TargetProbe is the Readiness used until the role-change engine provides
// one: a database is ready when its pools' target accepts a connection (a
// TCP or Unix-socket connect, no login) and none of its pools is refusing
// clients after a failed server login (server_login_retry). It is cheap:
// each target is dialed at most once per TTL, however often /readyz is
// asked.
//
// It proves reachability, not writability: a demoted primary still passes.
// The role-change engine's Readiness checks pg_is_in_recovery() instead.
type TargetProbe struct {
	Router *router.Router
	// TTL is how long a probe's answer is reused (0: one second).
	TTL time.Duration
	// DialTimeout bounds one probe (0: one second).
	DialTimeout time.Duration

	mu    sync.Mutex // guards cache
	cache map[string]probeResult
}

type probeResult struct {
	at  time.Time
	err error
}

// Ready implements Readiness.
func (t *TargetProbe) Ready(ctx context.Context) (bool, []string) {
	return t.Router.Ready(ctx, t.check)
}

// ReadyDatabase implements DatabaseReadiness.
func (t *TargetProbe) ReadyDatabase(ctx context.Context, db string) (bool, []string, bool) {
	return t.Router.ReadyDatabase(ctx, db, t.check)
}

// check returns what keeps d from being ready, or "".
func (t *TargetProbe) check(ctx context.Context, d *router.Database) string {
	if dc := d.Config(); dc.WantsReplica() {
		if len(d.Reads().Replicas) == 0 {
			return fmt.Sprintf("database %s: no usable replica (target_session_attrs = %s)", d.Name, dc.TargetSessionAttrs)
		}
		return ""
	}
	target := d.Target()
	if target.Host == "" {
		return fmt.Sprintf("database %s: no primary known yet", d.Name)
	}
	network, addr := "tcp", net.JoinHostPort(target.Host, strconv.Itoa(target.Port))
	if strings.HasPrefix(target.Host, "/") {
		network, addr = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", target.Host, target.Port)
	}
	if err := t.dial(ctx, network, addr); err != nil {
		return fmt.Sprintf("database %s: server %s does not accept connections: %v", d.Name, addr, err)
	}
	// While server_login_retry has not passed since a failed login, the
	// pool refuses clients with that error (PgBouncer's rule): not ready.
	for user, p := range d.Pools() {
		if err, at := p.LastLoginError(); err != nil && time.Since(at) < p.Config().LoginRetry {
			return fmt.Sprintf("database %s: last server login as %s failed: %v", d.Name, user, err)
		}
	}
	return ""
}

// dial connects to addr, or reuses an answer younger than TTL.
func (t *TargetProbe) dial(ctx context.Context, network, addr string) error {
	key := network + " " + addr
	now := time.Now()
	t.mu.Lock()
	if r, ok := t.cache[key]; ok && now.Sub(r.at) < t.ttl() {
		t.mu.Unlock()
		return r.err
	}
	t.mu.Unlock()
	timeout := t.DialTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, network, addr)
	if err == nil {
		c.Close()
	}
	t.mu.Lock()
	if t.cache == nil {
		t.cache = make(map[string]probeResult)
	}
	t.cache[key] = probeResult{at: now, err: err}
	t.mu.Unlock()
	return err
}

func (t *TargetProbe) ttl() time.Duration {
	if t.TTL <= 0 {
		return time.Second
	}
	return t.TTL
}
