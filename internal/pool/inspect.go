package pool

import (
	"sort"
	"sync"
	"time"
)

// This file is the read-only view of a pool for the admin console (SHOW
// SERVERS, readiness). Nothing here is on the path of a transaction: a
// connection is registered when it is dialed and forgotten when its reader
// goroutine ends.

// connSet is the set of a pool's open server connections. It has a mutex
// of its own, taken last (after Pool.mu when both are held), so that
// listing connections never waits on a dial or a hand-out.
type connSet struct {
	mu sync.Mutex
	m  map[*Conn]struct{}
}

func (s *connSet) add(c *Conn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[*Conn]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c *Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) list() []*Conn {
	s.mu.Lock()
	out := make([]*Conn, 0, len(s.m))
	for c := range s.m {
		out = append(out, c)
	}
	s.mu.Unlock()
	return out
}

// ConnInfo is a snapshot of one server connection.
type ConnInfo struct {
	Conn *Conn
	// Handler is the session bound to the connection, nil when none is.
	Handler Handler
	// Idle is true while the connection waits on the pool's idle list.
	Idle bool
	// LastUsed is when the connection was last given back to the pool
	// (its creation time before that).
	LastUsed time.Time
	// CloseNeeded is true when the connection will be closed instead of
	// reused: it was retired, broke, or belongs to an older target
	// generation (PgBouncer's close_needed after RECONNECT or a reload).
	CloseNeeded bool
	TLS         bool
}

// Conns returns a snapshot of the pool's open server connections, sorted
// by ID.
func (p *Pool) Conns() []ConnInfo {
	conns := p.conns.list()
	out := make([]ConnInfo, 0, len(conns))
	p.mu.Lock()
	gen := p.target.Gen
	for _, c := range conns {
		ci := ConnInfo{Conn: c, Idle: c.inIdle, TLS: c.srv.TLS != nil}
		if h := c.handler.Load(); h != nil {
			ci.Handler = *h
		}
		c.mu.Lock()
		ci.LastUsed = c.lastUsed
		c.mu.Unlock()
		ci.CloseNeeded = c.retire.Load() || c.dead.Load() || c.target.Gen != gen
		out = append(out, ci)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Conn.ID < out[j].Conn.ID })
	return out
}

// LastLoginError returns the error of the most recent failed server login
// and when it happened; nil once a later login succeeded.
func (p *Pool) LastLoginError() (error, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loginErr, p.loginAt
}
