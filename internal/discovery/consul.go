package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulConfig says where Patroni keeps a cluster in Consul.
type ConsulConfig struct {
	Addr       string // Consul HTTP API host:port; default 127.0.0.1:8500
	Scheme     string // "http" (default) or "https"
	Token      string // ACL token: needs service:read on Service and key_prefix:read on the KV prefix
	Datacenter string // default: the agent's
	CAFile     string // CA bundle for https
	Service    string // the Patroni scope: Patroni registers service <scope> and keeps keys under <Namespace>/<scope>/
	Namespace  string // Patroni's namespace setting without slashes; default "service"
}

// consulWait is how long one blocking query waits for a change. Short
// enough that a stuck connection is noticed soon, long enough to cost
// little (Consul adds up to wait/16 of jitter).
const consulWait = 5 * time.Second

// consul is the source that watches Patroni's Consul registrations.
//
// Two blocking queries run side by side, each in its own goroutine, and
// feed one state (consulState, under mu); every answer recomputes the
// snapshot from both.
//   - Health().Service(<scope>, passing only): Patroni registers each member
//     (with register_service: true) as service <scope>, ID "<scope>/<name>",
//     PostgreSQL's address and port, and tags "master" and "primary" (3.x) or
//     "replica". The service is re-registered on role change and its check
//     passes only after the first check interval, so health lags KV.
//   - KV().List(<namespace>/<scope>/): "leader" holds the leader's name (the
//     lock, deleted with the session), "failover" holds a requested
//     switchover ({"leader":..,"member":..}; "{}" once handled),
//     "members/<name>" holds JSON with conn_url, api_url, role, state,
//     timeline.
//
// Primary is the member the leader key names, at the address of its
// conn_url. Changing is true while the failover key asks for a switchover
// (Patroni writes it before anything else moves: the earliest notice), while
// the leader key is absent, while the leader's member key does not say
// running master/primary (it says "promoted" for a while after promotion),
// and while health disagrees with KV on the primary's address. When KV
// cannot be read (an ACL without key_prefix:read, say) but health can, the
// primary is the one passing service tagged master/primary.
type consul struct {
	*publisher
	opts Options
	cfg  ConsulConfig

	mu sync.Mutex // guards st; taken before the publisher's mutex, never after
	st consulState
}

// consulState is what the two watches last saw.
type consulState struct {
	health    []healthMember
	healthOK  bool // health answered at least once since its last error
	healthErr error
	kv        kvState
	kvOK      bool
	kvErr     error
}

type healthMember struct {
	Name string
	Host string
	Port int
	Tags []string
}

type kvState struct {
	prefixEmpty bool
	leader      string // "" when the leader key is absent
	failover    string // raw value, "" when absent
	members     map[string]kvMember
}

// kvMember is Patroni's members/<name> value.
type kvMember struct {
	ConnURL  string `json:"conn_url"`
	APIURL   string `json:"api_url"`
	Role     string `json:"role"`
	State    string `json:"state"`
	Timeline int64  `json:"timeline"`
	// XlogLocation is the member's WAL position (the primary's written,
	// a replica's replayed or received), as Patroni writes it every loop.
	XlogLocation int64          `json:"xlog_location"`
	Tags         map[string]any `json:"tags"`
}

// NewConsul returns a source that watches the Patroni cluster cfg.Service
// in Consul with blocking queries. Hurry has no effect on it: blocking
// queries already return as soon as anything changes.
func NewConsul(cfg ConsulConfig, opts Options) Source {
	opts = opts.withDefaults()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8500"
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	cfg.Namespace = strings.Trim(cfg.Namespace, "/")
	if cfg.Namespace == "" {
		cfg.Namespace = "service"
	}
	return &consul{publisher: newPublisher("consul", opts.Logger), opts: opts, cfg: cfg}
}

func (c *consul) prefix() string { return c.cfg.Namespace + "/" + c.cfg.Service + "/" }

// Run implements Source.
func (c *consul) Run(ctx context.Context) {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: c.opts.HTTPTimeout}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: c.opts.HTTPTimeout,
	}
	defer tr.CloseIdleConnections()
	client, err := api.NewClient(&api.Config{
		Address:    c.cfg.Addr,
		Scheme:     c.cfg.Scheme,
		Token:      c.cfg.Token,
		Datacenter: c.cfg.Datacenter,
		Transport:  tr,
		TLSConfig:  api.TLSConfig{CAFile: c.cfg.CAFile},
	})
	if err == nil && c.cfg.Service == "" {
		err = errors.New("no service (Patroni scope) configured")
	}
	if err != nil {
		c.update(&view{}, fmt.Errorf("consul discovery: %w", err))
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.watch(ctx, "health", c.queryHealth(client)) })
	wg.Go(func() { c.watch(ctx, "kv", c.queryKV(client)) })
	wg.Wait()
}

// query runs one blocking query with q and records its result in the
// state; it returns the index Consul answered with.
type query func(q *api.QueryOptions) (uint64, error)

func (c *consul) queryHealth(client *api.Client) query {
	return func(q *api.QueryOptions) (uint64, error) {
		entries, meta, err := client.Health().Service(c.cfg.Service, "", true, q)
		if err != nil {
			return 0, fmt.Errorf("consul health of service %q: %w", c.cfg.Service, err)
		}
		hs := make([]healthMember, 0, len(entries))
		for _, e := range entries {
			if e.Service == nil {
				continue
			}
			h := healthMember{
				Name: strings.TrimPrefix(e.Service.ID, c.cfg.Service+"/"),
				Host: e.Service.Address,
				Port: e.Service.Port,
				Tags: e.Service.Tags,
			}
			if h.Host == "" && e.Node != nil {
				// A service without an address uses its node's.
				h.Host = e.Node.Address
			}
			hs = append(hs, h)
		}
		c.mu.Lock()
		c.setOKLocked("health", c.st.healthErr)
		c.st.health, c.st.healthOK, c.st.healthErr = hs, true, nil
		c.mu.Unlock()
		return meta.LastIndex, nil
	}
}

func (c *consul) queryKV(client *api.Client) query {
	return func(q *api.QueryOptions) (uint64, error) {
		pairs, meta, err := client.KV().List(c.prefix(), q)
		if err != nil {
			return 0, fmt.Errorf("consul KV %s: %w", c.prefix(), err)
		}
		kv := kvState{prefixEmpty: len(pairs) == 0, members: map[string]kvMember{}}
		for _, p := range pairs {
			key := strings.TrimPrefix(p.Key, c.prefix())
			switch {
			case key == "leader":
				kv.leader = strings.TrimSpace(string(p.Value))
			case key == "failover":
				kv.failover = string(p.Value)
			case strings.HasPrefix(key, "members/"):
				var m kvMember
				if json.Unmarshal(p.Value, &m) == nil {
					kv.members[strings.TrimPrefix(key, "members/")] = m
				}
			}
		}
		c.mu.Lock()
		c.setOKLocked("kv", c.st.kvErr)
		c.st.kv, c.st.kvOK, c.st.kvErr = kv, true, nil
		c.mu.Unlock()
		return meta.LastIndex, nil
	}
}

// watch runs query as a blocking query until ctx is done, publishing after
// each answer. Index handling follows Consul's blocking-query notes
// (api-docs/features/blocking, "Implementation details"): an index that
// goes backwards resets to 0, an index below 1 is treated as 1, and
// queries are at least FastInterval apart so that a query returning at once
// (index 0, or a busy key) cannot spin. Errors back off with jitter.
func (c *consul) watch(ctx context.Context, name string, q query) {
	var (
		index    uint64
		failures int
	)
	for {
		start := time.Now()
		// Consul waits up to consulWait plus wait/16 of jitter before
		// answering; beyond that plus HTTPTimeout, the answer is lost.
		qctx, cancel := context.WithTimeout(ctx, consulWait+consulWait/16+c.opts.HTTPTimeout)
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: consulWait}).WithContext(qctx)
		got, err := q(opts)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		if err != nil {
			failures++
			c.setErr(name, err)
			// After an error start over with a query that does not
			// block, so that the first answer is current.
			index = 0
			wait = c.opts.backoff(failures)
		} else {
			failures = 0
			index = nextIndex(index, got)
			wait = c.opts.FastInterval - time.Since(start)
		}
		c.publish()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// nextIndex is the WaitIndex for the query after one that answered got,
// when the previous query used prev.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < 1:
		// Never expected, but index 0 would not block: use 1.
		return 1
	case got < prev:
		// The index went backwards (a snapshot restore, or another
		// server answered): start over.
		return 0
	}
	return got
}

// setErr records a watch's error and logs its first occurrence.
func (c *consul) setErr(name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var was error
	switch name {
	case "health":
		was, c.st.healthErr, c.st.healthOK = c.st.healthErr, err, false
	case "kv":
		was, c.st.kvErr, c.st.kvOK = c.st.kvErr, err, false
	}
	if was == nil {
		c.log.Warn("consul watch failing", "watch", name, "err", err)
	}
}

// setOKLocked logs the recovery of a watch that was failing.
func (c *consul) setOKLocked(name string, was error) {
	if was != nil {
		c.log.Info("consul watch recovered", "watch", name)
	}
}

// publish recomputes the snapshot from the state. It publishes under mu so
// that the two watches publish in the order their answers were recorded.
func (c *consul) publish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.update(c.interpret(&c.st))
}

// interpret turns what the watches saw into a view. It is a pure function
// of st (and the config).
func (c *consul) interpret(st *consulState) (*view, error) {
	endpoint := c.cfg.Scheme + "://" + c.cfg.Addr
	switch {
	case st.kvOK:
		return c.fromKV(st, endpoint)
	case st.healthOK:
		return fromHealth(st.health, endpoint), nil
	case st.kvErr != nil || st.healthErr != nil:
		return nil, errors.Join(st.kvErr, st.healthErr)
	}
	return nil, ErrNoAnswer
}

func (c *consul) fromKV(st *consulState, endpoint string) (*view, error) {
	kv := &st.kv
	if kv.prefixEmpty {
		return &view{Endpoint: endpoint}, fmt.Errorf("consul discovery: no keys under %s (is Patroni's scope %q and namespace %q right?)",
			c.prefix(), c.cfg.Service, c.cfg.Namespace)
	}
	v := &view{Endpoint: endpoint, Changing: failoverActive(kv.failover, time.Now())}
	if v.Changing {
		v.Planned = strings.TrimSpace(kv.failover)
	}
	names := make([]string, 0, len(kv.members))
	for name := range kv.members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		km := kv.members[name]
		m := Member{
			Name:     name,
			APIURL:   BaseURL(km.APIURL),
			Role:     normaliseRole(km.Role),
			State:    km.State,
			Timeline: km.Timeline,
			LagBytes: -1,
		}
		m.NoLoadBalance, m.NoFailover = tagSet(km.Tags, "noloadbalance"), tagSet(km.Tags, "nofailover")
		if lead, ok := kv.members[kv.leader]; ok && name != kv.leader && lead.XlogLocation > 0 && km.XlogLocation > 0 {
			// Patroni's /cluster computes lag the same way, from the
			// leader's position and the member's.
			m.LagBytes = max(0, lead.XlogLocation-km.XlogLocation)
		}
		m.Host, m.Port = hostPortFromConnURL(km.ConnURL)
		if name == kv.leader && m.Role != "standby_leader" {
			if m.Host == "" {
				// No usable conn_url: take the address from health.
				for _, h := range st.health {
					if h.Name == name {
						m.Host, m.Port = h.Host, h.Port
					}
				}
			}
			if !runningPrimary(km.State, km.Role) {
				v.Changing = true
			}
			if m.Host != "" && m.Port != 0 {
				m.Role = "primary"
				v.Primary = &m
				continue
			}
			v.Changing = true
		}
		v.Replicas = append(v.Replicas, m)
	}
	switch {
	case kv.leader == "":
		// No leader key: the lock was released or expired, and an
		// election is under way.
		v.Changing = true
	case v.Primary == nil && !slices.ContainsFunc(v.Replicas, func(m Member) bool { return m.Role == "standby_leader" }):
		// The leader key names a member without a usable member key:
		// take it from health if it is there.
		v.Changing = true
		for _, h := range st.health {
			if h.Name == kv.leader && h.Host != "" && h.Port != 0 {
				v.Primary = &Member{Name: h.Name, Host: h.Host, Port: h.Port, Role: "primary", LagBytes: -1}
				v.Replicas = slices.DeleteFunc(v.Replicas, func(m Member) bool { return m.Name == h.Name })
				break
			}
		}
	}
	if v.Primary != nil && st.healthOK {
		hp := healthPrimaries(st.health)
		if len(hp) != 1 || hp[0].Host != v.Primary.Host || hp[0].Port != v.Primary.Port {
			v.Changing = true
		}
	}
	return v, nil
}

// fromHealth is the view when only health can be read.
func fromHealth(hs []healthMember, endpoint string) *view {
	v := &view{Endpoint: endpoint}
	hp := healthPrimaries(hs)
	for _, h := range hs {
		m := Member{Name: h.Name, Host: h.Host, Port: h.Port, Role: roleFromTags(h.Tags), LagBytes: -1}
		if len(hp) == 1 && hp[0].Name == h.Name {
			v.Primary = &m
			continue
		}
		v.Replicas = append(v.Replicas, m)
	}
	// None or several passing primaries: a change is under way (or a
	// split brain, which Patroni's lock prevents); never guess.
	v.Changing = len(hp) != 1
	return v
}

func healthPrimaries(hs []healthMember) []healthMember {
	var out []healthMember
	for _, h := range hs {
		if roleFromTags(h.Tags) == "primary" {
			out = append(out, h)
		}
	}
	return out
}

func roleFromTags(tags []string) string {
	role := ""
	for _, t := range tags {
		switch r := normaliseRole(t); r {
		case "primary":
			return r
		case "replica", "standby_leader":
			role = r
		}
	}
	return role
}

// failoverActive reports whether Patroni's failover key asks for a
// switchover now. Patroni leaves "{}" behind once it is handled, and a
// scheduled one ({"scheduled_at": ...} in the future) is not under way yet.
func failoverActive(raw string, now time.Time) bool {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return false
	}
	var f struct {
		Leader      string `json:"leader"`
		Member      string `json:"member"`
		ScheduledAt string `json:"scheduled_at"`
	}
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		// Patroni 1.x wrote "leader:member" style values; be safe.
		return true
	}
	if f.Leader == "" && f.Member == "" {
		return false
	}
	if f.ScheduledAt != "" {
		if t, err := time.Parse(time.RFC3339Nano, f.ScheduledAt); err == nil && t.After(now) {
			return false
		}
	}
	return true
}

// hostPortFromConnURL parses Patroni's conn_url
// (postgres://host:port/postgres).
func hostPortFromConnURL(s string) (string, int) {
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" {
		return "", 0
	}
	port := 5432
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	return u.Hostname(), port
}
