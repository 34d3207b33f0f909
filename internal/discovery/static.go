package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Probe tells whether the PostgreSQL server at addr ("host:port") accepts
// writes. The caller supplies it: it dials with credentials and runs
// SELECT pg_is_in_recovery(). It must return when ctx is done.
type Probe func(ctx context.Context, addr string) (writable bool, err error)

// RoleProbe is a Probe that also measures a replica's replay delay (see
// Member.ReplayDelay; 0 for a primary or when unknown).
type RoleProbe func(ctx context.Context, addr string) (writable bool, replayDelay time.Duration, err error)

// static is the source for a fixed host list.
type static struct {
	*publisher
	opts    Options
	probe   RoleProbe
	always  bool // probe a single host too (NewStaticRoles)
	members []Member
	err     error // a host that does not parse; published by Run
}

// NewStaticRoles is NewStatic for a database that reads from replicas: it
// probes every host, even a single one, since each host's role matters,
// and records each replica's replay delay.
func NewStaticRoles(hosts []string, probe RoleProbe, opts Options) Source {
	s := newStatic(hosts, probe, opts)
	s.always = true
	return s
}

// NewStatic returns a source for a fixed list of "host:port" (the port
// defaults to 5432). With one host, that host is the primary and is never
// probed (the router verifies it anyway). With several, each poll probes
// them all, as libpq's target_session_attrs=read-write would: the one
// writable host is the primary; none writable gives Primary nil; two or
// more writable give Primary nil and an Err wrapping ErrSplitBrain, since
// guessing would send writes to the wrong side.
func NewStatic(hosts []string, probe Probe, opts Options) Source {
	var rp RoleProbe
	if probe != nil {
		rp = func(ctx context.Context, addr string) (bool, time.Duration, error) {
			w, err := probe(ctx, addr)
			return w, 0, err
		}
	}
	return newStatic(hosts, rp, opts)
}

func newStatic(hosts []string, probe RoleProbe, opts Options) *static {
	opts = opts.withDefaults()
	s := &static{publisher: newPublisher("static", opts.Logger), opts: opts, probe: probe}
	var errs []error
	for _, h := range hosts {
		m, err := parseHostPort(h)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.members = append(s.members, m)
	}
	if len(s.members) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("static discovery: no hosts"))
	}
	if len(s.members) > 1 && probe == nil {
		errs = append(errs, errors.New("static discovery: several hosts but no probe"))
	}
	s.err = errors.Join(errs...)
	return s
}

func parseHostPort(s string) (Member, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host (or IPv6 address) without a port.
		host, portStr = strings.Trim(s, "[]"), "5432"
	}
	port, err := strconv.Atoi(portStr)
	if host == "" || err != nil || port <= 0 || port > 65535 {
		return Member{}, fmt.Errorf("static discovery: bad host %q: want host:port", s)
	}
	m := Member{Host: host, Port: port, LagBytes: -1}
	m.Name = m.Addr()
	return m, nil
}

// Run implements Source.
func (s *static) Run(ctx context.Context) {
	if s.err != nil {
		s.update(&view{}, s.err)
		<-ctx.Done()
		return
	}
	if len(s.members) == 1 && !s.always {
		m := s.members[0]
		m.Role = "primary"
		s.update(&view{Endpoint: m.Addr(), Primary: &m}, nil)
		<-ctx.Done()
		return
	}
	s.pollLoop(ctx, s.opts, s.poll)
}

// poll probes every host at once.
func (s *static) poll(ctx context.Context) (*view, error) {
	type result struct {
		writable bool
		delay    time.Duration
		err      error
	}
	results := make([]result, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.opts.HTTPTimeout)
			defer cancel()
			w, delay, err := s.probe(pctx, m.Addr())
			if err != nil {
				err = fmt.Errorf("probe %s: %w", m.Addr(), err)
			}
			results[i] = result{w, delay, err}
		})
	}
	wg.Wait()

	var (
		v        view
		writable []string
		errs     []error
	)
	for i, m := range s.members {
		r := results[i]
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
			m.State = "unreachable"
			v.Replicas = append(v.Replicas, m)
		case r.writable:
			m.Role, m.State = "primary", "running"
			writable = append(writable, m.Addr())
			if v.Primary == nil {
				v.Primary = &m
			} else {
				v.Replicas = append(v.Replicas, m)
			}
		default:
			m.Role, m.State, m.ReplayDelay = "replica", "running", r.delay
			v.Replicas = append(v.Replicas, m)
		}
	}
	switch {
	case len(writable) > 1:
		// Never guess: put the first writable host back among the others.
		v.Replicas = append([]Member{*v.Primary}, v.Replicas...)
		v.Primary = nil
		return &v, fmt.Errorf("static discovery: %w: %s", ErrSplitBrain, strings.Join(writable, ", "))
	case v.Primary == nil && len(errs) > 0:
		// One of the hosts that did not answer may be the primary.
		return &v, fmt.Errorf("static discovery: no writable host: %w", errors.Join(errs...))
	}
	// With a primary found, hosts that did not answer are only replicas
	// we cannot see: not an error of discovery.
	if v.Primary != nil {
		v.Endpoint = v.Primary.Addr()
	}
	return &v, nil
}
