package patronitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClusterMember is one entry of Patroni's GET /cluster.
type ClusterMember struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`
	State    string          `json:"state"`
	APIURL   string          `json:"api_url"`
	Host     string          `json:"host"`
	Port     int             `json:"port"`
	Timeline int64           `json:"timeline"`
	Lag      json.RawMessage `json:"lag"` // a number, or "unknown"
}

// ClusterStatus is Patroni's GET /cluster.
type ClusterStatus struct {
	Members []ClusterMember `json:"members"`
	Pause   bool            `json:"pause"`
}

// leader is the member /cluster names leader, or nil.
func (s *ClusterStatus) leader() *ClusterMember {
	for i := range s.Members {
		if s.Members[i].Role == "leader" || s.Members[i].Role == "standby_leader" {
			return &s.Members[i]
		}
	}
	return nil
}

// replication is one row of pg_stat_replication in the leader's /patroni.
type replication struct {
	ApplicationName string `json:"application_name"` // the member name
	State           string `json:"state"`
}

// httpClient keeps no idle connections, so that tests checking for leaked
// goroutines do not see its connection goroutines.
var httpClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// getJSON GETs url, on the cluster's REST API or Consul, into v.
func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	// Patroni answers /patroni with 503 and a JSON body when PostgreSQL
	// is not running: that body is still worth decoding.
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: status %d: %w", url, resp.StatusCode, err)
	}
	return nil
}

// Status returns GET /cluster from the first member that answers.
func (c *Cluster) Status(ctx context.Context) (*ClusterStatus, error) {
	var errs []error
	for _, n := range c.Members {
		var s ClusterStatus
		if err := c.getJSON(ctx, n.APIURL+"/cluster", &s); err != nil {
			errs = append(errs, err)
			continue
		}
		return &s, nil
	}
	return nil, fmt.Errorf("no Patroni member answered /cluster: %w", errors.Join(errs...))
}

// Leader returns the member that Patroni's /cluster names leader (in any
// state: a leader that is still promoting is returned too).
func (c *Cluster) Leader(ctx context.Context) (*Node, error) {
	s, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	l := s.leader()
	if l == nil {
		return nil, errors.New("Patroni names no leader")
	}
	n := c.Node(l.Name)
	if n == nil {
		return nil, fmt.Errorf("Patroni names unknown leader %q", l.Name)
	}
	return n, nil
}

// Replicas returns every member but the leader.
func (c *Cluster) Replicas(ctx context.Context) ([]*Node, error) {
	l, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	var rs []*Node
	for _, n := range c.Members {
		if n != l {
			rs = append(rs, n)
		}
	}
	return rs, nil
}

// Switchover asks the leader for a switchover to candidate ("" lets Patroni
// choose) with POST /switchover, as patronictl does. Patroni answers once
// the leader key moved (its answer comes on a 1s poll of its own); Switchover
// then waits until /cluster shows the new leader in state running. It does
// not wait for writability: see WaitWritable.
func (c *Cluster) Switchover(ctx context.Context, candidate string) error {
	old, err := c.Leader(ctx)
	if err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"leader": old.Name, "candidate": candidate})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, old.APIURL+"/switchover", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.APIUsername != "" {
		req.SetBasicAuth(c.APIUsername, c.APIPassword)
	}
	// Patroni polls for the result for up to 20s before it answers.
	resp, err := (&http.Client{Timeout: 40 * time.Second, Transport: c.http.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("switchover %s -> %q: %w", old.Name, candidate, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("switchover %s -> %q: Patroni answered %d: %s", old.Name, candidate, resp.StatusCode, answer)
	}
	for {
		s, err := c.Status(ctx)
		if err == nil {
			if l := s.leader(); l != nil && l.Name != old.Name && (candidate == "" || l.Name == candidate) && l.State == "running" {
				return nil
			}
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("switchover %s -> %q: wait for the new leader: %w", old.Name, candidate, err)
		}
	}
}

// Patronictl runs patronictl with node0's config. For the subcommands that
// ask for confirmation (switchover, failover, restart, reinit, reload,
// flush, edit-config) it appends --force unless args already have it.
func (c *Cluster) Patronictl(ctx context.Context, args ...string) ([]byte, error) {
	forceable := []string{"switchover", "failover", "restart", "reinit", "reload", "flush", "edit-config"}
	if len(args) > 0 && slices.Contains(forceable, args[0]) && !slices.Contains(args, "--force") {
		args = append(args, "--force")
	}
	argv := append([]string{"-c", c.Members[0].ConfigFile}, args...)
	cmd := exec.CommandContext(ctx, ctlBin, argv...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + c.Dir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("patronictl %v: %w\n%s", args, err, out)
	}
	return out, nil
}

// InRecovery connects to n as the superuser and returns
// pg_is_in_recovery().
func (c *Cluster) InRecovery(ctx context.Context, n *Node) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(n, "postgres"))
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var rec bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
		return false, err
	}
	return rec, nil
}

// WaitWritable waits until n accepts connections and is not in recovery.
func (c *Cluster) WaitWritable(ctx context.Context, n *Node) error {
	var last error
	for {
		rec, err := c.InRecovery(ctx, n)
		if err == nil && !rec {
			return nil
		}
		if err == nil {
			err = errors.New("in recovery")
		}
		last = err
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("wait for %s (%s) to be writable: %w (last: %v)", n.Name, n.PGAddr(), err, last)
		}
	}
}

// waitReady waits until a leader is running, every other member streams
// from it and, on Consul, every member's service is registered and passing.
//
// A replica that does not stream for replicaStuckAfter is cloned again
// (patronictl reinit), once: on a loaded machine the leader can change
// while a replica is cloned from it, leaving that replica's WAL ahead of
// the new leader's on the same timeline ("requested starting point ... is
// ahead of the WAL flush position"), which Patroni 3.0.2 does not repair
// by itself.
func (c *Cluster) waitReady(ctx context.Context) error {
	var why, stuck string
	var stuckSince time.Time
	reinit := map[string]bool{}
	for {
		if err := c.checkAlive(); err != nil {
			return err
		}
		ok, w, notStreaming := c.ready(ctx)
		if ok {
			return nil
		}
		why = w
		switch {
		case notStreaming == "":
			stuck = ""
		case notStreaming != stuck:
			stuck, stuckSince = notStreaming, time.Now()
		case time.Since(stuckSince) > replicaStuckAfter && !reinit[stuck]:
			reinit[stuck] = true
			fmt.Fprintf(os.Stderr, "patronitest: cluster %s: %s has not streamed for %s: cloning it again\n", c.Scope, stuck, replicaStuckAfter)
			if out, err := c.Patronictl(ctx, "reinit", c.Scope, stuck); err != nil {
				fmt.Fprintf(os.Stderr, "patronitest: reinit %s: %v\n%s", stuck, err, out)
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("patronitest: cluster %s not ready: %s: %w%s", c.Scope, why, err, c.logTails(25))
		}
	}
}

// replicaStuckAfter is how long waitReady lets a replica not stream before
// it clones it again.
const replicaStuckAfter = 30 * time.Second

// ready reports whether the cluster is ready, why not, and the member that
// does not stream when that is why.
func (c *Cluster) ready(ctx context.Context) (bool, string, string) {
	s, err := c.Status(ctx)
	if err != nil {
		return false, err.Error(), ""
	}
	l := s.leader()
	if l == nil || l.State != "running" {
		return false, "no running leader", ""
	}
	if len(s.Members) != len(c.Members) {
		return false, fmt.Sprintf("%d of %d members registered", len(s.Members), len(c.Members)), ""
	}
	for _, m := range s.Members {
		// 3.0.2 says "running" for a replica; later versions "streaming".
		if m.State != "running" && m.State != "streaming" {
			return false, fmt.Sprintf("%s is %s", m.Name, m.State), ""
		}
	}
	var st struct {
		Replication []replication `json:"replication"`
	}
	if err := c.getJSON(ctx, c.Node(l.Name).APIURL+"/patroni", &st); err != nil {
		return false, err.Error(), ""
	}
	for _, m := range s.Members {
		if m.Name == l.Name {
			continue
		}
		if !slices.ContainsFunc(st.Replication, func(r replication) bool {
			return r.ApplicationName == m.Name && r.State == "streaming"
		}) {
			return false, fmt.Sprintf("%s does not stream from %s", m.Name, l.Name), m.Name
		}
	}
	if c.Store == StoreConsul {
		var entries []json.RawMessage
		u := "http://" + c.ConsulAddr + "/v1/health/service/" + url.PathEscape(c.Scope) + "?passing=1"
		if err := c.getJSON(ctx, u, &entries); err != nil {
			return false, err.Error(), ""
		}
		if len(entries) != len(c.Members) {
			return false, fmt.Sprintf("%d of %d Consul services passing", len(entries), len(c.Members)), ""
		}
	}
	return true, "", ""
}
