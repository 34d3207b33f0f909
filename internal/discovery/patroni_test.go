package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakePatroni is a set of fake Patroni members sharing one /cluster view,
// each serving /cluster and its own /patroni.
type fakePatroni struct {
	mu      sync.Mutex
	members []*fakeMember
	// cluster overrides the generated /cluster body when set.
	cluster string
	// auth, when set, is the "user:password" every request must carry
	// (HTTP Basic), answered as Patroni answers its unsafe endpoints.
	auth string
}

type fakeMember struct {
	name     string
	srv      *httptest.Server
	role     string // /cluster role
	state    string // /cluster state
	pgRole   string // /patroni role
	pgState  string // /patroni state
	port     int
	requests atomic.Int64
	down     atomic.Bool // answer nothing useful (connection closed)
}

func newFakePatroni(t *testing.T, names ...string) *fakePatroni {
	f := &fakePatroni{}
	for i, name := range names {
		m := &fakeMember{name: name, role: "replica", state: "running", pgRole: "replica", pgState: "running", port: 5432 + i}
		m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(m, w, r) }))
		t.Cleanup(m.srv.Close)
		f.members = append(f.members, m)
	}
	return f
}

func (f *fakePatroni) member(name string) *fakeMember {
	for _, m := range f.members {
		if m.name == name {
			return m
		}
	}
	panic("no member " + name)
}

// setLeader makes name the running leader ("leader" in /cluster, "master"
// in /patroni as Patroni 3.0 says) and the others running replicas.
func (f *fakePatroni) setLeader(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if m.name == name {
			m.role, m.state, m.pgRole, m.pgState = "leader", "running", "master", "running"
		} else {
			m.role, m.state, m.pgRole, m.pgState = "replica", "running", "replica", "running"
		}
	}
}

func (f *fakePatroni) set(name string, fn func(m *fakeMember)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.member(name))
}

func (f *fakePatroni) serve(m *fakeMember, w http.ResponseWriter, r *http.Request) {
	m.requests.Add(1)
	if m.down.Load() {
		// Like a member whose Patroni is gone: no HTTP answer.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth != "" {
		// Patroni 3.0.2, api.py check_auth_header.
		user, pw, ok := r.BasicAuth()
		switch {
		case !ok:
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "no auth header received")
			return
		case user+":"+pw != f.auth:
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "not authenticated")
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/cluster":
		if f.cluster != "" {
			fmt.Fprint(w, f.cluster)
			return
		}
		type cm struct {
			Name     string `json:"name"`
			Role     string `json:"role"`
			State    string `json:"state"`
			APIURL   string `json:"api_url"`
			Host     string `json:"host"`
			Port     int    `json:"port"`
			Timeline int    `json:"timeline"`
			Lag      any    `json:"lag,omitempty"`
		}
		var out struct {
			Members []cm `json:"members"`
		}
		for _, o := range f.members {
			c := cm{Name: o.name, Role: o.role, State: o.state, APIURL: o.srv.URL + "/patroni", Host: "127.0.0.1", Port: o.port, Timeline: 1}
			if o.role != "leader" {
				c.Lag = 0
			}
			out.Members = append(out.Members, c)
		}
		json.NewEncoder(w).Encode(out)
	case "/patroni":
		if m.pgState != "running" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, `{"state": %q, "role": %q, "patroni": {"version": "3.0.2"}}`, m.pgState, m.pgRole)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakePatroni) urls() []string {
	var us []string
	for _, m := range f.members {
		us = append(us, m.srv.URL)
	}
	return us
}

func fastOpts(t *testing.T) Options {
	return Options{Interval: 50 * time.Millisecond, FastInterval: 10 * time.Millisecond, FastPeriod: 100 * time.Millisecond, HTTPTimeout: 500 * time.Millisecond, Logger: testLogger(t)}
}

func TestPatroniRoleNames(t *testing.T) {
	tests := []struct {
		name         string
		clusterRole  string // the leader's role in /cluster
		clusterState string
		pgRole       string // the leader's role in /patroni
		pgState      string
		replicaRole  string // node b's role in /cluster
		wantPrimary  bool
		wantChanging bool
		wantRole     string // node b's normalised role
	}{
		{name: "3.x leader/master", clusterRole: "leader", clusterState: "running", pgRole: "master", pgState: "running", replicaRole: "replica", wantPrimary: true, wantRole: "replica"},
		{name: "4.x leader/primary", clusterRole: "leader", clusterState: "running", pgRole: "primary", pgState: "running", replicaRole: "sync_standby", wantPrimary: true, wantRole: "replica"},
		{name: "master in cluster", clusterRole: "master", clusterState: "running", pgRole: "master", pgState: "running", replicaRole: "quorum_standby", wantPrimary: true, wantRole: "replica"},
		{name: "primary in cluster", clusterRole: "primary", clusterState: "running", pgRole: "primary", pgState: "running", replicaRole: "replica", wantPrimary: true, wantRole: "replica"},
		{name: "leader not yet promoted", clusterRole: "leader", clusterState: "running", pgRole: "replica", pgState: "running", replicaRole: "replica", wantPrimary: true, wantChanging: true, wantRole: "replica"},
		{name: "leader stopping per /patroni", clusterRole: "leader", clusterState: "running", pgRole: "master", pgState: "stopping", replicaRole: "replica", wantPrimary: true, wantChanging: true, wantRole: "replica"},
		{name: "leader restarting per /cluster", clusterRole: "leader", clusterState: "restarting", pgRole: "master", pgState: "running", replicaRole: "replica", wantPrimary: true, wantChanging: true, wantRole: "replica"},
		{name: "leader starting", clusterRole: "leader", clusterState: "starting", pgRole: "master", pgState: "starting", replicaRole: "replica", wantPrimary: true, wantChanging: true, wantRole: "replica"},
		{name: "leader crashed", clusterRole: "leader", clusterState: "crashed", pgRole: "master", pgState: "crashed", replicaRole: "replica", wantPrimary: true, wantChanging: true, wantRole: "replica"},
		{name: "standby cluster", clusterRole: "standby_leader", clusterState: "running", pgRole: "standby_leader", pgState: "running", replicaRole: "replica", wantPrimary: false, wantRole: "replica"},
		{name: "no leader", clusterRole: "replica", clusterState: "running", pgRole: "replica", pgState: "running", replicaRole: "replica", wantPrimary: false, wantChanging: true, wantRole: "replica"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakePatroni(t, "a", "b")
			f.set("a", func(m *fakeMember) {
				m.role, m.state, m.pgRole, m.pgState = tt.clusterRole, tt.clusterState, tt.pgRole, tt.pgState
			})
			f.set("b", func(m *fakeMember) { m.role = tt.replicaRole })
			src := NewPatroni(f.urls(), fastOpts(t))
			runSource(t, src)
			s := waitFor(t, src, 3*time.Second, "first answer", func(s *Snapshot) bool { return s.Err == nil })
			if (s.Primary != nil) != tt.wantPrimary || s.Changing != tt.wantChanging {
				t.Fatalf("got %s; want primary %v changing %v", fmtSnap(s), tt.wantPrimary, tt.wantChanging)
			}
			if s.Primary != nil && (s.Primary.Name != "a" || s.Primary.Role != "primary" || s.Primary.Addr() != "127.0.0.1:5432" || s.Primary.APIURL != f.member("a").srv.URL) {
				t.Fatalf("primary = %+v", *s.Primary)
			}
			for _, r := range s.Replicas {
				if r.Name == "b" && (r.Role != tt.wantRole || r.LagBytes != 0) {
					t.Fatalf("replica b = %+v, want role %q lag 0", r, tt.wantRole)
				}
				if r.Name == "a" && tt.clusterRole == "standby_leader" && r.Role != "standby_leader" {
					t.Fatalf("standby leader listed as %+v", r)
				}
			}
		})
	}
}

func TestPatroniSwitchoverSequence(t *testing.T) {
	f := newFakePatroni(t, "a", "b")
	f.setLeader("a")
	src := NewPatroni(f.urls(), fastOpts(t))
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "leader a", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "a" && !s.Changing })
	gen := s.Generation

	// The phases Patroni 3.0.2 went through in a measured switchover.
	f.set("a", func(m *fakeMember) { m.pgState = "stopping" })
	s = waitFor(t, src, 3*time.Second, "changing", func(s *Snapshot) bool { return s.Changing })
	if s.Primary == nil || s.Primary.Name != "a" || s.Generation != gen {
		t.Fatalf("old leader stopping: %s", fmtSnap(s))
	}
	f.set("a", func(m *fakeMember) { m.role, m.state, m.pgRole = "replica", "stopping", "demoted" })
	s = waitFor(t, src, 3*time.Second, "no primary", func(s *Snapshot) bool { return s.Primary == nil })
	if !s.Changing || s.Generation != gen+1 {
		t.Fatalf("no leader: %s", fmtSnap(s))
	}
	f.set("b", func(m *fakeMember) { m.role = "leader" }) // not promoted yet
	s = waitFor(t, src, 3*time.Second, "primary b", func(s *Snapshot) bool { return s.Primary != nil })
	if s.Primary.Name != "b" || !s.Changing || s.Generation != gen+2 {
		t.Fatalf("new leader promoting: %s", fmtSnap(s))
	}
	f.set("b", func(m *fakeMember) { m.pgRole = "master" })
	s = waitFor(t, src, 3*time.Second, "settled", func(s *Snapshot) bool { return !s.Changing })
	if s.Primary == nil || s.Primary.Name != "b" || s.Generation != gen+2 || s.Primary.Port != 5433 {
		t.Fatalf("settled: %s", fmtSnap(s))
	}
}

func TestPatroniUnreachableMembers(t *testing.T) {
	f := newFakePatroni(t, "a", "b")
	f.setLeader("b")
	f.member("a").down.Store(true)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused from now on
	src := NewPatroni([]string{dead.URL, f.member("a").srv.URL, f.member("b").srv.URL + "/patroni/"}, fastOpts(t))
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "primary b", func(s *Snapshot) bool { return s.Primary != nil })
	if s.Primary.Name != "b" || s.Endpoint != f.member("b").srv.URL || s.Err != nil || s.Changing {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
}

func TestPatroniLearnsMembersFromCluster(t *testing.T) {
	f := newFakePatroni(t, "a", "b", "c")
	f.setLeader("a")
	// Only a is configured.
	src := NewPatroni([]string{f.member("a").srv.URL}, fastOpts(t))
	runSource(t, src)
	waitFor(t, src, 3*time.Second, "leader a", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "a" })

	// a's Patroni goes away and c takes over: the source must ask b or c,
	// which it knows only from a's /cluster.
	f.member("a").down.Store(true)
	f.setLeader("c")
	s := waitFor(t, src, 3*time.Second, "leader c", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "c" && s.Err == nil })
	if s.Endpoint == f.member("a").srv.URL {
		t.Fatalf("endpoint = %s, want a learned member", s.Endpoint)
	}
}

func TestPatroniAllDownKeepsStaleMembers(t *testing.T) {
	f := newFakePatroni(t, "a", "b")
	f.setLeader("a")
	src := NewPatroni(f.urls(), fastOpts(t))
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "leader a", func(s *Snapshot) bool { return s.Primary != nil && !s.Changing })
	gen, updated := s.Generation, s.Updated
	for _, m := range f.members {
		m.down.Store(true)
	}
	s = waitFor(t, src, 3*time.Second, "error", func(s *Snapshot) bool { return s.Err != nil })
	if s.Primary == nil || s.Primary.Name != "a" || s.Generation != gen || !s.Updated.Equal(updated) {
		t.Fatalf("snapshot = %s, updated %v (was %v)", fmtSnap(s), s.Updated, updated)
	}
	if !strings.Contains(s.Err.Error(), "/cluster") {
		t.Fatalf("err = %v, want it to name the request", s.Err)
	}
	for _, m := range f.members {
		m.down.Store(false)
	}
	waitFor(t, src, 3*time.Second, "recovery", func(s *Snapshot) bool { return s.Err == nil })
}

func TestPatroniHurryPollsFast(t *testing.T) {
	f := newFakePatroni(t, "a", "b")
	f.setLeader("a")
	// An Interval far beyond the test: only Hurry can make it notice.
	src := NewPatroni(f.urls(), Options{Interval: time.Hour, FastInterval: 10 * time.Millisecond, FastPeriod: 200 * time.Millisecond, Logger: testLogger(t)})
	runSource(t, src)
	waitFor(t, src, 3*time.Second, "leader a", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "a" })
	time.Sleep(300 * time.Millisecond) // past the fast period after the first answer

	// Slow now: requests stop.
	n := f.member("a").requests.Load() + f.member("b").requests.Load()
	time.Sleep(200 * time.Millisecond)
	if m := f.member("a").requests.Load() + f.member("b").requests.Load(); m != n {
		t.Fatalf("%d requests while idle with a 1h interval", m-n)
	}

	f.setLeader("b")
	src.Hurry()
	waitFor(t, src, time.Second, "leader b after Hurry", func(s *Snapshot) bool { return s.Primary != nil && s.Primary.Name == "b" })

	// And it keeps polling fast for FastPeriod after Hurry and a change.
	n = f.member("a").requests.Load() + f.member("b").requests.Load()
	time.Sleep(100 * time.Millisecond)
	if m := f.member("a").requests.Load() + f.member("b").requests.Load(); m-n < 3 {
		t.Fatalf("only %d requests in 100ms of fast polling", m-n)
	}
}

func TestPatroniNoURLs(t *testing.T) {
	src := NewPatroni(nil, Options{})
	runSource(t, src)
	s := waitFor(t, src, time.Second, "error", func(s *Snapshot) bool { return !errors.Is(s.Err, ErrNoAnswer) })
	if s.Err == nil {
		t.Fatal("no error without URLs")
	}
}

func TestPatroniLagUnknownAndOddJSON(t *testing.T) {
	f := newFakePatroni(t, "a")
	f.mu.Lock()
	f.cluster = `{"members": [
		{"name": "a", "role": "leader", "state": "running", "api_url": "` + f.members[0].srv.URL + `/patroni", "host": "127.0.0.1", "port": 5432, "timeline": 3},
		{"name": "b", "role": "replica", "state": "creating replica", "api_url": "http://127.0.0.1:1/patroni", "lag": "unknown"},
		{"name": "c", "role": "replica", "state": "streaming", "host": "127.0.0.1", "port": 5434, "lag": 1024, "extra": [1,2]}
	], "scope": "x", "pause": true}`
	f.members[0].pgRole = "master"
	f.mu.Unlock()
	src := NewPatroni(f.urls(), fastOpts(t))
	runSource(t, src)
	s := waitFor(t, src, 3*time.Second, "answer", func(s *Snapshot) bool { return s.Err == nil && s.Primary != nil })
	if s.Changing || s.Primary.Timeline != 3 || len(s.Replicas) != 2 {
		t.Fatalf("snapshot = %s", fmtSnap(s))
	}
	if s.Replicas[0].LagBytes != -1 || s.Replicas[1].LagBytes != 1024 {
		t.Fatalf("lags = %d, %d", s.Replicas[0].LagBytes, s.Replicas[1].LagBytes)
	}
}

// Credentials in a configured URL's userinfo go to every member, learned
// ones included, and never show in the snapshot; missing or wrong ones
// give an error that says so, without the password.
func TestPatroniCredentials(t *testing.T) {
	f := newFakePatroni(t, "a", "b")
	f.setLeader("b")
	f.auth = "api:s3cret"
	withUser := func(u, userinfo string) string { return strings.Replace(u, "://", "://"+userinfo+"@", 1) }
	for _, tc := range []struct {
		name string
		urls []string
		api  PatroniAPI
		want string // error substring; "" for success
	}{
		{name: "userinfo", urls: []string{withUser(f.member("a").srv.URL, "api:s3cret")}},
		{name: "configured", urls: []string{f.member("a").srv.URL}, api: PatroniAPI{Username: "api", Password: "s3cret"}},
		{name: "none", urls: []string{f.member("a").srv.URL},
			want: "GET " + f.member("a").srv.URL + "/cluster: Patroni requires REST API credentials and none were sent: set patroni_username and patroni_password"},
		{name: "wrong", urls: []string{withUser(f.member("a").srv.URL, "api:wrong")},
			want: `Patroni refused the REST API credentials of user "api"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := fastOpts(t)
			opts.PatroniAPI = tc.api
			src := NewPatroni(tc.urls, opts)
			runSource(t, src)
			if tc.want != "" {
				s := waitFor(t, src, 3*time.Second, "an error", func(s *Snapshot) bool { return s.Err != nil && !errors.Is(s.Err, ErrNoAnswer) })
				var ae *AccessError
				if !errors.As(s.Err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(s.Err.Error(), tc.want) {
					t.Fatalf("err = %v, want an *AccessError with %q", s.Err, tc.want)
				}
				if strings.Contains(s.Err.Error(), "wrong") {
					t.Fatalf("the error shows the password: %v", s.Err)
				}
				return
			}
			// b is the leader: its /patroni, at the api_url a's /cluster
			// names, was asked with the credentials too, or Changing
			// would stay true.
			s := waitFor(t, src, 3*time.Second, "leader b, settled", func(s *Snapshot) bool {
				return s.Err == nil && s.Primary != nil && s.Primary.Name == "b" && !s.Changing
			})
			if s.Endpoint != f.member("a").srv.URL {
				t.Fatalf("endpoint %q, want %q without credentials", s.Endpoint, f.member("a").srv.URL)
			}
			// a goes away: b, learned from /cluster, answers with the
			// same credentials.
			f.member("a").down.Store(true)
			t.Cleanup(func() { f.member("a").down.Store(false) })
			waitFor(t, src, 3*time.Second, "b answering", func(s *Snapshot) bool {
				return s.Err == nil && s.Endpoint == f.member("b").srv.URL
			})
		})
	}
}

func TestPatroniBadTLSFiles(t *testing.T) {
	src := NewPatroni([]string{"https://127.0.0.1:1"}, Options{PatroniAPI: PatroniAPI{CAFile: "/nonexistent/ca.pem"}})
	runSource(t, src)
	s := waitFor(t, src, time.Second, "error", func(s *Snapshot) bool { return s.Err != nil && !errors.Is(s.Err, ErrNoAnswer) })
	if !strings.Contains(s.Err.Error(), "patroni discovery: Patroni REST API CA: open /nonexistent/ca.pem") {
		t.Fatalf("err = %v", s.Err)
	}
}

func TestAccessErrorWording(t *testing.T) {
	for _, tc := range []struct {
		e    AccessError
		want string
	}{
		{AccessError{Method: "POST", URL: "http://h:8008/switchover", Status: 401, Reason: "no auth header received"},
			`POST http://h:8008/switchover: Patroni requires REST API credentials and none were sent: set patroni_username and patroni_password (Patroni's restapi.authentication); Patroni answered 401 "no auth header received"`},
		{AccessError{Method: "POST", URL: "http://h:8008/switchover", Status: 401, Reason: "not authenticated", User: "api"},
			`POST http://h:8008/switchover: Patroni refused the REST API credentials of user "api": check patroni_username and patroni_password against Patroni's restapi.authentication; Patroni answered 401 "not authenticated"`},
		{AccessError{Method: "POST", URL: "https://h:8008/switchover", Status: 403, Reason: "client certificate required"},
			`Patroni requires a client certificate: set patroni_cert_file and patroni_key_file (Patroni's restapi.verify_client); Patroni answered 403`},
		{AccessError{Method: "GET", URL: "https://h:8008/cluster", Status: 403, Reason: "Access is denied", User: "api"},
			`GET https://h:8008/cluster: Patroni denied access from this address (Patroni's restapi.allowlist); Patroni answered 403 "Access is denied"`},
	} {
		if got := tc.e.Error(); !strings.Contains(got, tc.want) {
			t.Errorf("Error() = %q\nwant it to contain %q", got, tc.want)
		}
	}
}

func TestBaseURLAndRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.1:8008/patroni": "http://10.0.0.1:8008",
		"http://10.0.0.1:8008/":        "http://10.0.0.1:8008",
		"10.0.0.1:8008":                "http://10.0.0.1:8008",
		" ":                            "",
	} {
		if got := BaseURL(in); got != want {
			t.Errorf("BaseURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := RedactURL("https://u:secret@h:8008"); got != "https://***@h:8008" {
		t.Errorf("redact: %q", got)
	}
}
