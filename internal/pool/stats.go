package pool

import "time"

// Stats is a point-in-time view of a pool for SHOW POOLS and metrics.
type Stats struct {
	Active  int // bound to a session (sv_active)
	Idle    int // free (sv_idle)
	Dialing int // connecting or logging in (sv_login)
	Waiting int // acquisitions queued (cl_waiting)
	Total   int
	// MaxWait is how long the oldest queued acquisition has waited.
	MaxWait time.Duration
	Held    bool
	Target  Target
}

// Stats returns the pool's current counts.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{
		Active: p.active, Idle: len(p.idle), Dialing: p.dialing, Waiting: p.waiters.len(),
		Total: p.total, Held: p.held, Target: p.target,
	}
	if p.waiters.len() > 0 {
		s.MaxWait = time.Since(p.waiters.front().since)
	}
	return s
}
