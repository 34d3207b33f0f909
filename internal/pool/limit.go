package pool

import "sync"

// Limit bounds the server connections of several pools together:
// max_db_connections across a database's pools, max_user_connections
// across a user's. A pool counts a connection against its limits from the
// moment it decides to dial until the connection is closed. The zero
// limit (Max 0) allows any number.
//
// Lock order: a pool's mu, then a Limit's mu. A Limit never calls into a
// pool while holding its own lock.
type Limit struct {
	mu    sync.Mutex
	max   int
	n     int
	pools map[*Pool]bool
}

// NewLimit returns a limit of max connections (0: unlimited).
func NewLimit(max int) *Limit { return &Limit{max: max, pools: make(map[*Pool]bool)} }

// SetMax changes the bound (a reload). Connections over a lowered bound
// close as they are released.
func (l *Limit) SetMax(max int) {
	l.mu.Lock()
	l.max = max
	l.mu.Unlock()
}

func (l *Limit) tryAdd() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.n >= l.max {
		return false
	}
	l.n++
	return true
}

func (l *Limit) release() {
	l.mu.Lock()
	l.n--
	l.mu.Unlock()
}

// Full reports whether the limit is reached.
func (l *Limit) Full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max > 0 && l.n >= l.max
}

func (l *Limit) register(p *Pool) {
	l.mu.Lock()
	l.pools[p] = true
	l.mu.Unlock()
}

func (l *Limit) unregister(p *Pool) {
	l.mu.Lock()
	delete(l.pools, p)
	l.mu.Unlock()
}

// others returns the pools sharing the limit, but p.
func (l *Limit) others(p *Pool) []*Pool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Pool, 0, len(l.pools))
	for q := range l.pools {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

// addSlotLocked counts one more connection (open or dialing) against the
// pool's size and its limits; false when a limit is full. Called with p.mu.
func (p *Pool) addSlotLocked() bool {
	for i, l := range p.cfg.Limits {
		if !l.tryAdd() {
			for _, m := range p.cfg.Limits[:i] {
				m.release()
			}
			return false
		}
	}
	p.total++
	return true
}

// dropSlotLocked is the reverse of addSlotLocked, when a connection closes
// or a dial is given up. Called with p.mu.
func (p *Pool) dropSlotLocked() {
	p.total--
	for _, l := range p.cfg.Limits {
		l.release()
	}
}

// limitsFullLocked reports whether one of the pool's limits is reached.
func (p *Pool) limitsFullLocked() bool {
	for _, l := range p.cfg.Limits {
		if l.Full() {
			return true
		}
	}
	return false
}

// makeRoom closes an idle connection of another pool sharing a full limit
// with p, when p has acquisitions waiting (PgBouncer closes idle
// connections of other pools at max_db_connections the same way). Called
// by the janitor without any lock held.
func (p *Pool) makeRoom() {
	p.mu.Lock()
	waiting := p.waiters.len() > 0 && !p.held
	var full []*Limit
	for _, l := range p.cfg.Limits {
		if l.Full() {
			full = append(full, l)
		}
	}
	p.mu.Unlock()
	if !waiting {
		return
	}
	for _, l := range full {
		for _, q := range l.others(p) {
			if q.closeOneIdle() {
				p.mu.Lock()
				p.serveLocked()
				p.mu.Unlock()
				return
			}
		}
	}
}

// closeOneIdle closes the least recently used idle connection, if any.
func (p *Pool) closeOneIdle() bool {
	p.mu.Lock()
	if len(p.idle) == 0 {
		p.mu.Unlock()
		return false
	}
	c := p.idle[0]
	p.idle = p.idle[1:]
	c.inIdle = false
	p.dropSlotLocked()
	p.mu.Unlock()
	c.close()
	return true
}
