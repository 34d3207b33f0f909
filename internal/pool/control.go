package pool

import (
	"context"
	"log/slog"
	"time"
)

// Hold makes new acquisitions wait (bounded by hold_timeout each) even when
// connections are free. Connections already bound keep working.
func (p *Pool) Hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// Unhold lets waiting acquisitions through in arrival order.
func (p *Pool) Unhold() {
	p.mu.Lock()
	p.held = false
	p.serveLocked()
	p.mu.Unlock()
}

// SetHoldNote says why the hold lasts ("" : no writable primary in time),
// for the error of an acquisition that waits out hold_timeout.
func (p *Pool) SetHoldNote(note string) {
	p.mu.Lock()
	p.holdNote = note
	p.mu.Unlock()
}

// Held reports whether the pool is held.
func (p *Pool) Held() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// SetTarget points the pool at t. Idle connections of another generation
// are closed now; bound ones when they are released.
func (p *Pool) SetTarget(t Target) {
	p.mu.Lock()
	p.target = t
	p.welcome = nil
	p.loginErr = nil // a new target deserves a fresh try
	p.refusal = nil
	old := p.idle[:0:0]
	keep := p.idle[:0]
	for _, c := range p.idle {
		if c.target.Gen != t.Gen {
			c.inIdle = false
			p.dropSlotLocked()
			old = append(old, c)
		} else {
			keep = append(keep, c)
		}
	}
	p.idle = keep
	p.serveLocked()
	p.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// Target returns where the pool currently dials.
func (p *Pool) Target() Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.target
}

// SetConfig applies new sizes and timeouts (a reload). A smaller pool
// shrinks as connections are released.
func (p *Pool) SetConfig(cfg Config) {
	p.mu.Lock()
	p.cfg = cfg
	var extra []*Conn
	for p.total > cfg.Size && len(p.idle) > 0 {
		c := p.idle[0]
		p.idle = p.idle[1:]
		c.inIdle = false
		p.dropSlotLocked()
		extra = append(extra, c)
	}
	p.serveLocked()
	p.mu.Unlock()
	for _, c := range extra {
		c.close()
	}
}

// Config returns the pool's current configuration.
func (p *Pool) Config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// CloseIdle closes every idle connection (RECONNECT, a role change).
// Bound connections are retired: closed when released.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	for _, c := range idle {
		c.inIdle = false
		p.dropSlotLocked()
	}
	p.serveLocked()
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// Welcome returns the ParameterStatus values a server of this pool reports
// at startup, dialing one connection if none was dialed yet. The proxy
// sends them to clients at login, as PgBouncer does.
func (p *Pool) Welcome(ctx context.Context) (map[string]string, error) {
	p.mu.Lock()
	w := p.welcome
	p.mu.Unlock()
	if w != nil {
		return w, nil
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	p.Put(c)
	p.mu.Lock()
	w = p.welcome
	if w == nil {
		w = c.srv.Params
	}
	p.mu.Unlock()
	return w, nil
}

// Close closes the pool: waiters fail, idle connections close, bound
// connections close when released. Safe to call twice.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.retryTimer != nil {
		p.retryTimer.Stop()
	}
	if p.expiry != nil {
		p.expiry.Stop()
	}
	for _, l := range p.cfg.Limits {
		l.unregister(p)
	}
	for _, w := range p.waiters.all() {
		w.ch <- grant{err: ErrClosed}
	}
	p.waiters.reset()
	idle := p.idle
	p.idle = nil
	for _, c := range idle {
		c.inIdle = false
		p.dropSlotLocked()
	}
	p.mu.Unlock()
	close(p.stopJan)
	<-p.janDone
	for _, c := range idle {
		c.close()
		<-c.done
	}
}

// janitor evicts idle connections past server_idle_timeout or
// server_lifetime, keeps min_pool_size open, and lets the reserve pool
// serve waiters that waited reserve_pool_timeout.
func (p *Pool) janitor() {
	defer close(p.janDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stopJan:
			return
		case <-t.C:
		}
		p.evict()
		p.fillMin()
		p.makeRoom()
		p.mu.Lock()
		p.serveLocked()
		p.mu.Unlock()
	}
}

func (p *Pool) evict() {
	now := time.Now()
	var old []*Conn
	p.mu.Lock()
	keep := p.idle[:0]
	for _, c := range p.idle {
		c.mu.Lock()
		idleFor := now.Sub(c.lastUsed)
		c.mu.Unlock()
		expired := (p.cfg.Lifetime > 0 && now.Sub(c.created) >= p.cfg.Lifetime) ||
			(p.cfg.IdleTimeout > 0 && idleFor >= p.cfg.IdleTimeout && p.total > p.cfg.MinSize)
		if expired || c.dead.Load() {
			c.inIdle = false
			p.dropSlotLocked()
			old = append(old, c)
			continue
		}
		keep = append(keep, c)
	}
	for i := len(keep); i < len(p.idle); i++ {
		p.idle[i] = nil
	}
	p.idle = keep
	p.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// fillMin dials up to min_pool_size connections, one per tick, as
// PgBouncer does, unless logins are failing.
func (p *Pool) fillMin() {
	p.mu.Lock()
	if err, wait := p.loginBackoffLocked(); err != nil || wait {
		p.mu.Unlock()
		return
	}
	if p.closed || p.held || p.total >= p.cfg.MinSize || p.total >= p.cfg.Size {
		p.mu.Unlock()
		return
	}
	if !p.addSlotLocked() {
		p.mu.Unlock()
		return
	}
	p.dialing++
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-p.stopJan:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := p.dialSlot(ctx)
	cancel()
	if err != nil {
		p.log.Debug("min_pool_size dial failed", slog.String("pool", p.Name), slog.Any("err", err))
		return
	}
	p.Put(c)
}
