package registry

import (
	"context"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// Timings of the registration.
const (
	// ttl is how long the check stays passing without news from the
	// process; ttlInterval, how often the process passes it (a third,
	// so that one slow request does not fail it).
	ttl         = 15 * time.Second
	ttlInterval = ttl / 3
	// deregisterAfter is how long a critical check (a crashed or hung
	// process) keeps the instance registered. One minute is Consul's
	// minimum; its reaper runs every 30s, so a crashed instance goes
	// within about 90s.
	deregisterAfter = time.Minute
	// retryMin and retryMax bound the back-off while the agent fails.
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// Registrar keeps the serving instance registered with the local Consul
// agent while its configuration says consul_register: it registers, passes
// the TTL check every ttlInterval, registers again when the agent lost the
// registration (a restart) or the configuration changed (a reload), and
// deregisters on Close. It logs one line per change of state (registered,
// failing, registered again, updated, deregistered), never one per
// attempt.
//
// Update and Close may be called from any goroutine. The one goroutine
// (run) starts at the first Update that asks for registration and ends in
// Close.
type Registrar struct {
	log     *slog.Logger
	version string
	// interval is how often the check is passed (ttlInterval; tests
	// shorten it).
	interval time.Duration

	mu      sync.Mutex     // guards want, started, closed
	want    *config.Config // the configuration in force; nil before Update
	started bool
	closed  bool

	wake chan struct{} // capacity 1: a new want
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run returns
	once sync.Once
}

// New returns a Registrar that does nothing until Update. version goes in
// the registration's Meta.
func New(log *slog.Logger, version string) *Registrar {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registrar{
		log: log, version: version, interval: ttlInterval,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Update puts cfg in force: with consul_register, the instance is (kept)
// registered as cfg says, without it deregistered. It returns at once; the
// registration happens in the background.
func (r *Registrar) Update(cfg *config.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.want = cfg
	if !r.started && cfg.Proxy.ConsulRegister {
		r.started = true
		go r.run()
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Close deregisters the instance (within requestTimeout) and stops. Safe to
// call twice; Update does nothing after it.
func (r *Registrar) Close() {
	r.once.Do(func() {
		r.mu.Lock()
		r.closed = true
		started := r.started
		r.mu.Unlock()
		close(r.stop)
		if started {
			<-r.done
		}
	})
}

// agent is the client of one agent, with the settings it was made from.
type agent struct {
	client *api.Client
	tr     *http.Transport
	key    [4]string // address, scheme, token, CA file
}

func agentKey(p *config.Proxy) [4]string {
	return [4]string{p.ConsulRegisterAddr, p.ConsulRegisterScheme, p.ConsulRegisterToken, p.ConsulRegisterCAFile}
}

// state is what run knows; it belongs to run's goroutine.
type state struct {
	agent   *agent
	reg     *api.AgentServiceRegistration // registered now (as far as we know), nil when not
	failing bool                          // the last attempt failed (and was logged)
	failed  int                           // consecutive failures, for the back-off
	ever    bool                          // registered at least once
}

// run registers, passes the check and re-registers until Close.
func (r *Registrar) run() {
	defer close(r.done)
	var st state
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-r.stop:
			r.deregister(&st, "stopping")
			st.closeAgent()
			return
		case <-r.wake:
		case <-timer.C:
		}
		r.mu.Lock()
		cfg := r.want
		r.mu.Unlock()
		if cfg == nil || !cfg.Proxy.ConsulRegister {
			r.deregister(&st, "consul_register is off")
			st.closeAgent()
			timer.Stop()
			continue
		}
		err := r.sync(&st, cfg)
		next := r.interval
		if err != nil {
			st.failed++
			next = min(retryMin<<min(st.failed-1, 5), retryMax)
			if !st.failing {
				st.failing = true
				r.log.Warn("Consul registration failing; retrying", slog.String("agent", cfg.Proxy.ConsulRegisterAddr),
					slog.String("id", ServiceID(&cfg.Proxy)), slog.Any("err", err))
			}
		} else {
			st.failed = 0
		}
		timer.Reset(next)
	}
}

// sync makes the agent hold cfg's registration and passes its check.
func (r *Registrar) sync(st *state, cfg *config.Config) error {
	p := &cfg.Proxy
	if st.agent == nil || st.agent.key != agentKey(p) {
		r.deregister(st, "the Consul agent settings changed")
		st.closeAgent()
		client, tr, err := newClient(p)
		if err != nil {
			return err
		}
		st.agent = &agent{client: client, tr: tr, key: agentKey(p)}
	}
	want := registration(cfg, r.version)
	if st.reg != nil && st.reg.ID != want.ID {
		r.deregister(st, "its address changed")
	}
	changed := st.reg != nil && !reflect.DeepEqual(st.reg, want)
	lost := false
	if st.reg == nil || changed {
		if err := r.register(st, want); err != nil {
			return err
		}
	} else if err := r.pass(st, want); err != nil {
		// The agent forgot the check: it restarted without its state
		// (a dev agent, or a new node). Register again.
		st.reg, lost = nil, true
		if err := r.register(st, want); err != nil {
			return err
		}
	}
	attrs := []any{slog.String("id", want.ID), slog.String("service", want.Name), slog.String("address", p.ConsulRegisterAdvertise), slog.String("agent", p.ConsulRegisterAddr)}
	switch {
	case !st.ever:
		r.log.Info("registered in Consul", attrs...)
	case st.failing:
		r.log.Info("registered in Consul again", attrs...)
	case lost:
		r.log.Info("registered in Consul again: the agent had lost the registration", attrs...)
	case changed:
		r.log.Info("Consul registration updated", attrs...)
	}
	st.ever, st.failing = true, false
	return nil
}

// register registers want (replacing what the agent had under its ID) and
// passes its check at once.
func (r *Registrar) register(st *state, want *api.AgentServiceRegistration) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := st.agent.client.Agent().ServiceRegisterOpts(want, opts); err != nil {
		return err
	}
	st.reg = want
	return r.pass(st, want)
}

// pass passes the TTL check of want.
func (r *Registrar) pass(st *state, want *api.AgentServiceRegistration) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	return st.agent.client.Agent().UpdateTTLOpts(checkID(want.ID), "serving", api.HealthPassing, q)
}

// deregister removes the current registration, if any, saying why.
func (r *Registrar) deregister(st *state, why string) {
	if st.reg == nil || st.agent == nil {
		st.reg = nil
		return
	}
	id := st.reg.ID
	st.reg = nil
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := st.agent.client.Agent().ServiceDeregisterOpts(id, q); err != nil {
		r.log.Warn("Consul deregistration failed: Consul removes the instance once its check has been critical for "+deregisterAfter.String(),
			slog.String("id", id), slog.String("why", why), slog.Any("err", err))
		return
	}
	r.log.Info("deregistered from Consul", slog.String("id", id), slog.String("why", why))
}

func (st *state) closeAgent() {
	if st.agent != nil {
		st.agent.tr.CloseIdleConnections()
		st.agent = nil
	}
}
