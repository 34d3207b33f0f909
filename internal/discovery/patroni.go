package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// patroni is the source that polls Patroni's REST API.
//
// Each poll asks GET /cluster of the member that answered last, then of the
// configured URLs, then of the members /cluster listed (so one reachable
// URL is enough to find the others). /cluster names the leader from the
// leader key, which moves before promotion has finished; so the poll also
// asks GET /patroni of that leader, whose state and role come from the
// running PostgreSQL, and says Changing until it reports a running primary.
// Measured on Patroni 3.0.2: the old leader's /patroni says "stopping" about
// a second before /cluster does, and the new leader's /patroni says
// "replica" for the ~150ms between /cluster naming it and it accepting
// writes.
type patroni struct {
	*publisher
	opts       Options
	transport  *http.Transport
	http       *PatroniHTTP
	initErr    error    // the TLS files could not be loaded
	configured []string // base URLs from the config, normalised, without credentials
	// learned and last belong to Run's goroutine.
	learned []string // base URLs of members /cluster listed, not configured
	last    string   // base URL that answered /cluster last
}

// NewPatroni returns a source polling the Patroni REST API at urls (base
// URLs such as http://10.0.0.1:8008; a trailing /patroni, as in a member's
// api_url, is accepted).
//
// Its snapshot names as Primary the member /cluster calls leader, even
// while that member is not yet running as primary: Changing is true then,
// as it is while the leader is stopping, starting or restarting, and while
// no member holds the leader key. The router must verify writability with
// pg_is_in_recovery() before sending traffic: a named leader is a candidate,
// not a proof. A standby cluster's standby_leader is listed among Replicas
// with Role "standby_leader"; Primary is nil then, since it is read-only.
//
// opts.PatroniAPI gives the credentials and TLS settings of the API; the
// credentials of a URL's userinfo never show in a snapshot (Endpoint) or
// an error.
//
// When no member answers, the snapshot keeps the last members with Err set
// and Updated telling their age.
func NewPatroni(urls []string, opts Options) Source {
	opts = opts.withDefaults()
	tr := &http.Transport{
		// The REST API is reached directly: an HTTP proxy from the
		// environment would add a hop that fails on its own.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: opts.HTTPTimeout}).DialContext,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: opts.HTTPTimeout,
		TLSHandshakeTimeout:   opts.HTTPTimeout,
	}
	h, bases, err := NewPatroniHTTP(opts.PatroniAPI, urls, tr)
	p := &patroni{
		publisher: newPublisher("patroni", opts.Logger),
		opts:      opts,
		transport: tr,
		http:      h,
		initErr:   err,
	}
	for _, b := range bases {
		if !slices.Contains(p.configured, b) {
			p.configured = append(p.configured, b)
		}
	}
	return p
}

// Run implements Source.
func (p *patroni) Run(ctx context.Context) {
	defer p.transport.CloseIdleConnections()
	var err error
	switch {
	case p.initErr != nil:
		err = fmt.Errorf("patroni discovery: %w", p.initErr)
	case len(p.configured) == 0:
		err = errors.New("patroni discovery: no REST API URLs")
	}
	if err != nil {
		p.update(&view{}, err)
		<-ctx.Done()
		return
	}
	p.pollLoop(ctx, p.opts, p.poll)
}

// clusterJSON is GET /cluster (Patroni 2.x-4.x).
type clusterJSON struct {
	Members []struct {
		Name     string          `json:"name"`
		Role     string          `json:"role"`
		State    string          `json:"state"`
		APIURL   string          `json:"api_url"`
		Host     string          `json:"host"`
		Port     int             `json:"port"`
		Timeline int64           `json:"timeline"`
		Lag      json.RawMessage `json:"lag"` // bytes, or "unknown"
		Tags     map[string]any  `json:"tags"`
	} `json:"members"`
}

// statusJSON is the part of GET /patroni this source reads.
type statusJSON struct {
	State string `json:"state"`
	Role  string `json:"role"`
}

func (p *patroni) poll(ctx context.Context) (*view, error) {
	var errs []error
	for _, base := range p.candidates() {
		var cl clusterJSON
		if err := p.get(ctx, base+"/cluster", &cl); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		p.last = base
		p.learn(&cl)
		return p.interpret(ctx, base, &cl), nil
	}
	return nil, fmt.Errorf("patroni discovery: no member answered /cluster: %w", errors.Join(errs...))
}

// candidates lists the base URLs to try, the last one that answered first.
func (p *patroni) candidates() []string {
	out := make([]string, 0, 1+len(p.configured)+len(p.learned))
	for _, list := range [][]string{{p.last}, p.configured, p.learned} {
		for _, u := range list {
			if u != "" && !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

// learn remembers the API URLs of the members /cluster listed.
func (p *patroni) learn(cl *clusterJSON) {
	p.learned = p.learned[:0]
	for _, m := range cl.Members {
		if b := BaseURL(m.APIURL); b != "" && !slices.Contains(p.configured, b) && !slices.Contains(p.learned, b) {
			p.learned = append(p.learned, b)
		}
	}
}

// interpret turns /cluster into a view, asking the leader's /patroni.
func (p *patroni) interpret(ctx context.Context, endpoint string, cl *clusterJSON) *view {
	v := &view{Endpoint: endpoint}
	leaderRole := ""
	for _, cm := range cl.Members {
		m := Member{
			Name:     cm.Name,
			Host:     cm.Host,
			Port:     cm.Port,
			APIURL:   BaseURL(cm.APIURL),
			Role:     normaliseRole(cm.Role),
			State:    cm.State,
			Timeline: cm.Timeline,
			LagBytes: -1,
		}
		var lag int64
		if json.Unmarshal(cm.Lag, &lag) == nil {
			m.LagBytes = lag
		}
		m.NoLoadBalance, m.NoFailover = tagSet(cm.Tags, "noloadbalance"), tagSet(cm.Tags, "nofailover")
		if m.Role == "primary" || m.Role == "standby_leader" {
			leaderRole = m.Role
		}
		if m.Role == "primary" && v.Primary == nil && m.Host != "" && m.Port != 0 {
			v.Primary = &m
			continue
		}
		v.Replicas = append(v.Replicas, m)
	}
	switch {
	case leaderRole == "" && len(cl.Members) > 0:
		// Members but no leader key: an election is under way.
		v.Changing = true
	case leaderRole == "primary" && v.Primary == nil:
		// A leader we cannot reach (no host in its conn_url).
		v.Changing = true
	case v.Primary != nil:
		v.Changing = !runningPrimary(v.Primary.State, "primary")
		if v.Primary.APIURL != "" {
			var st statusJSON
			// A leader whose API does not answer is taken on /cluster's
			// word: Changing would otherwise stay true (and polling fast)
			// wherever only some members' APIs are reachable.
			if err := p.get(ctx, v.Primary.APIURL+"/patroni", &st); err == nil && !runningPrimary(st.State, st.Role) {
				v.Changing = true
			}
		}
	}
	return v
}

// tagSet reports whether Patroni's member tag name is set: true, or a
// string Patroni's YAML would read as true.
func tagSet(tags map[string]any, name string) bool {
	switch v := tags[name].(type) {
	case bool:
		return v
	case string:
		switch strings.ToLower(v) {
		case "true", "yes", "on", "1":
			return true
		}
	}
	return false
}

// runningPrimary reports whether a Patroni state and role say PostgreSQL
// runs as a primary.
func runningPrimary(state, role string) bool {
	return state == "running" && normaliseRole(role) == "primary"
}

// normaliseRole maps the role names of Patroni 2.x-4.x, in /cluster, in
// /patroni and in the DCS member keys, onto Member.Role's values.
func normaliseRole(r string) string {
	switch strings.ReplaceAll(strings.ToLower(r), "-", "_") {
	case "leader", "master", "primary":
		return "primary"
	case "standby_leader":
		return "standby_leader"
	case "replica", "sync_standby", "quorum_standby":
		return "replica"
	}
	// "demoted", "promoted", "uninitialized", ...: transitional.
	return ""
}

// get GETs url into v within HTTPTimeout. Patroni answers /patroni with 503
// and a JSON body when PostgreSQL is not running; that body is decoded too.
func (p *patroni) get(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.HTTPTimeout)
	defer cancel()
	return p.http.GetJSON(ctx, url, v)
}
