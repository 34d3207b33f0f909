package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// Patroni's REST API as the switchover uses it (Patroni 3.0.2 and later:
// patroni/api.py, do_GET_cluster and do_POST_failover; patroni/utils.py,
// cluster_as_json).

// clusterMember is one entry of GET /cluster.
type clusterMember struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`  // leader, standby_leader, sync_standby, replica
	State    string          `json:"state"` // running (3.0.2 says so for replicas too), streaming, ...
	APIURL   string          `json:"api_url"`
	Host     string          `json:"host"`
	Port     int             `json:"port"`
	Timeline int64           `json:"timeline"`
	Lag      json.RawMessage `json:"lag"` // bytes, or "unknown"; absent on the leader
	Tags     map[string]any  `json:"tags"`
}

func (m *clusterMember) addr() string { return net.JoinHostPort(m.Host, strconv.Itoa(m.Port)) }

// lagBytes is the member's replication lag, -1 when unknown.
func (m *clusterMember) lagBytes() int64 {
	var n int64
	if json.Unmarshal(m.Lag, &n) != nil {
		return -1
	}
	return n
}

func (m *clusterMember) noFailover() bool {
	v, ok := m.Tags["nofailover"].(bool)
	return ok && v
}

// clusterStatus is GET /cluster.
type clusterStatus struct {
	Members   []clusterMember `json:"members"`
	Pause     bool            `json:"pause"` // maintenance mode
	Scheduled *struct {
		At   string `json:"at"`
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"scheduled_switchover"`
}

// patroniClient speaks to Patroni's REST API, with the database's
// credentials and TLS settings (patroni_username, patroni_password,
// patroni_*_file) on every request. It keeps no idle connections: it makes
// a handful of requests per command.
type patroniClient struct {
	http *discovery.PatroniHTTP
	// configured are the base URLs of patroni_urls, without credentials.
	configured []string
}

func newPatroniClient(dc *config.Database) (*patroniClient, error) {
	tr := &http.Transport{
		Proxy:               nil,
		DisableKeepAlives:   true,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSHandshakeTimeout: 2 * time.Second,
	}
	h, bases, err := discovery.NewPatroniHTTP(patroniAPI(dc), dc.PatroniURLs, tr)
	if err != nil {
		return nil, err
	}
	return &patroniClient{http: h, configured: bases}, nil
}

// patroniAPI is how dc reaches Patroni's REST API.
func patroniAPI(dc *config.Database) discovery.PatroniAPI {
	return discovery.PatroniAPI{Username: dc.PatroniUsername, Password: dc.PatroniPassword,
		CAFile: dc.PatroniCAFile, CertFile: dc.PatroniCertFile, KeyFile: dc.PatroniKeyFile}
}

// requestTimeout bounds a GET; the POST /switchover has its own bound.
const requestTimeout = 3 * time.Second

func (p *patroniClient) getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return p.http.GetJSON(ctx, url, v)
}

// cluster returns GET /cluster from the first of urls that answers.
func (p *patroniClient) cluster(ctx context.Context, urls []string) (*clusterStatus, error) {
	var errs []error
	for _, u := range urls {
		var st clusterStatus
		if err := p.getJSON(ctx, u+"/cluster", &st); err != nil {
			errs = append(errs, err)
			continue
		}
		return &st, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no Patroni REST API URL known")
	}
	return nil, fmt.Errorf("no Patroni member answered GET /cluster: %w", errors.Join(errs...))
}

// scope returns the Patroni scope (GET /patroni) from the first of urls
// that says.
func (p *patroniClient) scope(ctx context.Context, urls []string) (string, error) {
	var errs []error
	for _, u := range urls {
		var st struct {
			Patroni struct {
				Scope string `json:"scope"`
			} `json:"patroni"`
		}
		if err := p.getJSON(ctx, u+"/patroni", &st); err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Patroni.Scope != "" {
			return st.Patroni.Scope, nil
		}
	}
	return "", fmt.Errorf("no Patroni member told its scope (GET /patroni): %w", errors.Join(errs...))
}

// switchoverTimeout bounds POST /switchover: Patroni polls the outcome for
// up to 20s (2 x max(10, loop_wait) one-second polls) before it answers.
const switchoverTimeout = 40 * time.Second

// switchover asks apiURL (the leader's) to hand the leader role to
// candidate ("": Patroni's choice) with POST /switchover, as patronictl
// does, and returns Patroni's answer. Patroni answers 200 once the leader
// key moved, 412 when it finds the switchover impossible, 503 when it
// failed or cannot tell.
func (p *patroniClient) switchover(ctx context.Context, apiURL, leader, candidate string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, switchoverTimeout)
	defer cancel()
	body := map[string]string{"leader": leader}
	if candidate != "" {
		body["candidate"] = candidate
	}
	b, _ := json.Marshal(body)
	resp, err := p.post(ctx, apiURL+"/switchover", b)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	text := strings.TrimSpace(string(answer))
	if resp.StatusCode != http.StatusOK {
		return text, fmt.Errorf("Patroni answered %d: %s", resp.StatusCode, text)
	}
	return text, nil
}

func (p *patroniClient) post(ctx context.Context, url string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return p.http.Do(req)
}

// checkAccess asks apiURL whether it takes this client's credentials and
// client certificate for POST /switchover, without switching anything
// over: it POSTs an empty object, which Patroni refuses (400, "Bad
// Request") once it has checked access (3.0.2: api.py, do_POST_failover is
// decorated with check_access, and _read_json_content refuses an empty
// object). Only a 401 or 403 (an *discovery.AccessError) is a failure.
func (p *patroniClient) checkAccess(ctx context.Context, apiURL string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := p.post(ctx, apiURL+"/switchover", []byte("{}"))
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// switchoverPlan is what the check found.
type switchoverPlan struct {
	leader    clusterMember
	candidate string // as asked; "" lets Patroni choose
	eligible  []string
}

// checkCluster says whether st can take a switchover to candidate (""
// any), with at most maxLag bytes of replication lag. The members'
// timelines are not compared: a replica that followed the last switchover
// reports its old timeline for a while after it streams the new one, and
// Patroni does not compare them either.
func checkCluster(st *clusterStatus, candidate string, maxLag int64) (*switchoverPlan, error) {
	if st.Scheduled != nil {
		return nil, fmt.Errorf("a switchover is already scheduled at %s (from %q to %q): cancel it first (patronictl flush <scope> switchover)",
			st.Scheduled.At, st.Scheduled.From, st.Scheduled.To)
	}
	var leader *clusterMember
	sync := false
	for i := range st.Members {
		m := &st.Members[i]
		switch m.Role {
		case "leader", "master", "primary":
			leader = m
		case "standby_leader":
			return nil, fmt.Errorf("%s is a standby leader: this is a standby cluster, whose primary is elsewhere", m.Name)
		case "sync_standby":
			sync = true
		}
	}
	if leader == nil {
		return nil, errors.New("Patroni names no leader")
	}
	if leader.State != "running" {
		return nil, fmt.Errorf("leader %s is %s, not running", leader.Name, leader.State)
	}
	if st.Pause && candidate == "" {
		return nil, errors.New("the cluster is in maintenance mode (paused): Patroni switches over only to a named --candidate then")
	}
	plan := &switchoverPlan{leader: *leader, candidate: candidate}
	var why []string
	found := false
	for i := range st.Members {
		m := &st.Members[i]
		if m.Name == leader.Name || (candidate != "" && m.Name != candidate) {
			continue
		}
		found = true
		lag := m.lagBytes()
		switch {
		case m.State != "running" && m.State != "streaming":
			why = append(why, fmt.Sprintf("%s is %s", m.Name, m.State))
		case m.noFailover():
			why = append(why, fmt.Sprintf("%s is tagged nofailover", m.Name))
		case sync && m.Role != "sync_standby":
			why = append(why, fmt.Sprintf("%s is not a synchronous standby (synchronous_mode is on)", m.Name))
		case lag < 0:
			why = append(why, fmt.Sprintf("%s's lag is unknown", m.Name))
		case lag > maxLag:
			why = append(why, fmt.Sprintf("%s lags %d bytes (more than %d)", m.Name, lag, maxLag))
		default:
			plan.eligible = append(plan.eligible, m.Name)
		}
	}
	switch {
	case candidate != "" && !found:
		names := make([]string, 0, len(st.Members))
		for _, m := range st.Members {
			names = append(names, m.Name)
		}
		if candidate == leader.Name {
			return nil, fmt.Errorf("candidate %s is the leader already", candidate)
		}
		return nil, fmt.Errorf("no member %q (members: %s)", candidate, strings.Join(names, ", "))
	case len(plan.eligible) == 0 && len(why) == 0:
		return nil, fmt.Errorf("no replica to switch over to: the cluster has the leader %s only", leader.Name)
	case len(plan.eligible) == 0:
		slices.Sort(why)
		return nil, fmt.Errorf("no replica can take over: %s", strings.Join(why, "; "))
	}
	return plan, nil
}
