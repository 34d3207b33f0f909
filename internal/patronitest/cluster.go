// Package patronitest starts real Patroni clusters for tests: a DCS (etcd,
// or a Consul dev agent), then Patroni nodes that each run PostgreSQL 15,
// all on free loopback ports, in a temporary directory that Stop removes.
//
// It runs the Debian packages (patroni 3.0.2, etcd-server, PostgreSQL 15)
// as installed; Consul comes from a binary found by [ConsulBinary].
// PostgreSQL refuses to run as root, so Patroni runs as the postgres OS user
// through setpriv (not su/runuser, which need a PAM session). Every process
// gets a parent-death signal so it dies with the test binary: Patroni gets
// SIGTERM (it then stops PostgreSQL, which it started in its own session),
// etcd and Consul SIGKILL.
//
// It must not be imported by non-test code.
package patronitest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PostgreSQL and Patroni locations of the Debian packages.
const (
	pgBinDir   = "/usr/lib/postgresql/15/bin"
	patroniBin = "/usr/bin/patroni"
	ctlBin     = "/usr/bin/patronictl"
)

// Stores.
const (
	StoreEtcd   = "etcd"
	StoreConsul = "consul"
)

// Options for Start. The zero value is a 2-node cluster on etcd, its REST
// API over plain http without authentication.
type Options struct {
	Nodes     int    // default 2
	Store     string // StoreEtcd (default) or StoreConsul
	ConsulBin string // Consul binary; default: see ConsulBinary
	// APIUsername and APIPassword set the REST API's
	// restapi.authentication: Patroni then wants them (HTTP Basic) on its
	// unsafe endpoints (POST /switchover, /restart, ...). The Cluster's
	// own requests and Patronictl send them.
	APIUsername, APIPassword string
	// TLS serves the REST API over https with a certificate of a CA made
	// for the cluster, and requires a client certificate on every
	// request (restapi.verify_client: required). Not with StoreConsul:
	// the Consul agent's checks of the API would not trust the CA.
	TLS bool
}

// Cluster is a running Patroni cluster. Its fields are read-only.
type Cluster struct {
	Scope   string // Patroni scope (also the Consul service name)
	Store   string // StoreEtcd or StoreConsul
	Members []*Node
	// EtcdURL is the etcd client URL (etcd store only).
	EtcdURL string
	// ConsulAddr is the Consul HTTP API host:port (consul store only).
	ConsulAddr string
	// Namespace is Patroni's DCS namespace without slashes ("service"):
	// Consul KV keys live under <Namespace>/<Scope>/.
	Namespace                            string
	SuperUser, SuperPassword             string
	ReplicationUser, ReplicationPassword string
	Dir                                  string // temporary directory, removed by Stop
	TTL, LoopWait, RetryTimeout          int    // Patroni DCS timings, seconds
	// APIUsername and APIPassword are the REST API's credentials
	// (Options), "" when it has none.
	APIUsername, APIPassword string
	// With Options.TLS: CAFile is the PEM certificate of the CA that
	// signed the REST API's certificate, and ClientCertFile and
	// ClientKeyFile a client certificate it accepts. "" otherwise.
	CAFile, ClientCertFile, ClientKeyFile string

	uid, gid int          // of the postgres OS user
	dcs      *process     // etcd or consul
	http     *http.Client // to the REST API, with the CA and client certificate
	stopOnce sync.Once
	stopErr  error
}

// Node is one Patroni member.
type Node struct {
	Name       string
	PGPort     int
	APIPort    int
	APIURL     string // Patroni REST API base URL, http://127.0.0.1:<APIPort> (https with Options.TLS)
	Dir        string
	DataDir    string
	ConfigFile string // Patroni's YAML config (patronictl -c uses it)
	LogFile    string // Patroni's and PostgreSQL's stderr
	proc       *process
}

// PGAddr is PostgreSQL's host:port.
func (n *Node) PGAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.PGPort) }

// DSN is a keyword/value connection string to node as the superuser.
func (c *Cluster) DSN(n *Node, dbname string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=2",
		n.PGPort, c.SuperUser, c.SuperPassword, dbname)
}

// Node returns the member called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Members {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// PatroniURLs are the members' REST API base URLs.
func (c *Cluster) PatroniURLs() []string {
	urls := make([]string, len(c.Members))
	for i, n := range c.Members {
		urls[i] = n.APIURL
	}
	return urls
}

// Require starts a cluster and registers Stop as a cleanup. It fails the
// test (never skips) when the cluster cannot start.
func Require(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("start Patroni cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop Patroni cluster: %v", err)
		}
	})
	return c
}

// Start starts a DCS and opts.Nodes Patroni members, and returns once a
// leader is running and every replica streams from it (and, on Consul, every
// member's service is registered and passing). On error everything started
// is stopped and the error includes the tail of the relevant log.
//
// Ports are chosen free but another process may take one before it is
// bound; Start then tries once more with new ports.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := start(ctx, opts)
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "address already in use") && ctx.Err() == nil {
		c, err = start(ctx, opts)
	}
	return c, err
}

func start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	if opts.Store == "" {
		opts.Store = StoreEtcd
	}
	if opts.Store != StoreEtcd && opts.Store != StoreConsul {
		return nil, fmt.Errorf("patronitest: unknown store %q", opts.Store)
	}
	if opts.TLS && opts.Store == StoreConsul {
		return nil, errors.New("patronitest: TLS with StoreConsul: the agent's service checks would not trust the test CA")
	}
	for _, bin := range []string{patroniBin, ctlBin, pgBinDir + "/postgres", "/usr/bin/setpriv"} {
		if !isExecutable(bin) {
			return nil, fmt.Errorf("patronitest: %s is missing (install Debian packages patroni, etcd-server, postgresql-15)", bin)
		}
	}
	var consulBin string
	if opts.Store == StoreConsul {
		if consulBin, err = ConsulBinary(ctx, opts.ConsulBin); err != nil {
			return nil, err
		}
	}
	uid, gid, err := postgresUser()
	if err != nil {
		return nil, err
	}

	c := &Cluster{
		Scope:               "pt-" + randHex(4),
		Store:               opts.Store,
		Namespace:           "service",
		SuperUser:           "postgres",
		SuperPassword:       "super-" + randHex(6),
		ReplicationUser:     "replicator",
		ReplicationPassword: "repl-" + randHex(6),
		TTL:                 10,
		LoopWait:            1,
		RetryTimeout:        3,
		APIUsername:         opts.APIUsername,
		APIPassword:         opts.APIPassword,
		uid:                 uid,
		gid:                 gid,
		http:                httpClient,
	}
	if opts.Store == StoreConsul {
		// Patroni gives Consul a session TTL of ttl/2 and Consul refuses
		// sessions under 10s (session_ttl_min).
		c.TTL = 20
	}
	if c.Dir, err = os.MkdirTemp("", "patronitest-"); err != nil {
		return nil, fmt.Errorf("patronitest: %w", err)
	}
	// postgres must traverse the directory to reach its node directory.
	if err := os.Chmod(c.Dir, 0o711); err != nil {
		os.RemoveAll(c.Dir)
		return nil, fmt.Errorf("patronitest: %w", err)
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if opts.TLS {
		if err := c.writeTLSFiles(); err != nil {
			return nil, err
		}
	}

	switch opts.Store {
	case StoreEtcd:
		err = c.startEtcd(ctx)
	case StoreConsul:
		err = c.startConsul(ctx, consulBin)
	}
	if err != nil {
		return nil, err
	}

	ports, err := freePorts(2 * opts.Nodes)
	if err != nil {
		return nil, err
	}
	for i := range opts.Nodes {
		n := &Node{Name: fmt.Sprintf("node%d", i), PGPort: ports[2*i], APIPort: ports[2*i+1]}
		n.APIURL = fmt.Sprintf("%s://127.0.0.1:%d", c.apiScheme(), n.APIPort)
		n.Dir = filepath.Join(c.Dir, n.Name)
		n.DataDir = filepath.Join(n.Dir, "data")
		n.ConfigFile = filepath.Join(n.Dir, "patroni.yml")
		n.LogFile = filepath.Join(c.Dir, n.Name+".log")
		if err := c.writeNodeConfig(n); err != nil {
			return nil, err
		}
		c.Members = append(c.Members, n)
	}
	// Start every node at once: they race for the initialize key, one
	// runs initdb and the others wait for it and take a base backup.
	for _, n := range c.Members {
		if err := c.startNode(n); err != nil {
			return nil, err
		}
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// writeNodeConfig writes n's Patroni config. It is JSON, which is YAML.
func (c *Cluster) writeNodeConfig(n *Node) error {
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return fmt.Errorf("patronitest: %w", err)
	}
	hba := []string{
		"local all all trust",
		"host all all 127.0.0.1/32 scram-sha-256",
		"host replication " + c.ReplicationUser + " 127.0.0.1/32 scram-sha-256",
	}
	restapi := map[string]any{
		"listen":          fmt.Sprintf("127.0.0.1:%d", n.APIPort),
		"connect_address": fmt.Sprintf("127.0.0.1:%d", n.APIPort),
	}
	if c.APIUsername != "" {
		restapi["authentication"] = map[string]any{"username": c.APIUsername, "password": c.APIPassword}
	}
	if c.CAFile != "" {
		// Patroni's own requests to the other members (and patronictl's)
		// present restapi.certfile as their client certificate and
		// verify the server with restapi.cafile (request.py).
		restapi["certfile"] = filepath.Join(c.Dir, "restapi.crt")
		restapi["keyfile"] = filepath.Join(c.Dir, "restapi.key")
		restapi["cafile"] = c.CAFile
		restapi["verify_client"] = "required"
	}
	cfg := map[string]any{
		"scope":     c.Scope,
		"namespace": "/" + c.Namespace + "/",
		"name":      n.Name,
		"log":       map[string]any{"level": "INFO"},
		"restapi":   restapi,
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl":                     c.TTL,
				"loop_wait":               c.LoopWait,
				"retry_timeout":           c.RetryTimeout,
				"maximum_lag_on_failover": 1 << 20,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"use_slots":     true,
					"parameters": map[string]any{
						"wal_level":             "replica",
						"hot_standby":           "on",
						"wal_log_hints":         "on", // pg_rewind needs it
						"max_wal_senders":       10,
						"max_replication_slots": 10,
						"wal_keep_size":         "128MB",
						// Patroni takes max_connections from the DCS
						// only (replicas need at least the primary's).
						"max_connections": 200,
					},
				},
			},
			"initdb": []any{map[string]any{"encoding": "UTF8"}, map[string]any{"locale": "C.UTF-8"}, map[string]any{"auth-local": "trust"}},
		},
		"postgresql": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", n.PGPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", n.PGPort),
			"data_dir":        n.DataDir,
			"bin_dir":         pgBinDir,
			"pgpass":          filepath.Join(n.Dir, "pgpass"),
			"pg_hba":          hba,
			"authentication": map[string]any{
				"superuser":   map[string]any{"username": c.SuperUser, "password": c.SuperPassword},
				"replication": map[string]any{"username": c.ReplicationUser, "password": c.ReplicationPassword},
			},
			"parameters": map[string]any{
				"unix_socket_directories": n.Dir,
			},
			"remove_data_directory_on_rewind_failure":     true,
			"remove_data_directory_on_diverged_timelines": true,
		},
		"tags": map[string]any{"nofailover": false, "noloadbalance": false, "clonefrom": false, "nosync": false},
	}
	switch c.Store {
	case StoreEtcd:
		cfg["etcd3"] = map[string]any{"hosts": []string{strings.TrimPrefix(c.EtcdURL, "http://")}}
	case StoreConsul:
		cfg["consul"] = map[string]any{
			"host":             c.ConsulAddr,
			"register_service": true,
			// Patroni's default is 5s: a new primary's service check
			// would pass up to 5s after promotion.
			"service_check_interval": "1s",
		}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.ConfigFile, b, 0o600); err != nil {
		return fmt.Errorf("patronitest: %w", err)
	}
	for _, p := range []string{n.Dir, n.ConfigFile} {
		if err := os.Chown(p, c.uid, c.gid); err != nil {
			return fmt.Errorf("patronitest: %w", err)
		}
	}
	return nil
}

// startNode starts Patroni for n as the postgres user.
func (c *Cluster) startNode(n *Node) error {
	env := []string{
		"PATH=" + pgBinDir + ":/usr/bin:/bin",
		"HOME=" + n.Dir,
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
	}
	p, err := startProcess("patroni "+n.Name, n.LogFile, env,
		"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
		// Changing uid clears the parent-death signal; set it again for
		// Patroni, which stops PostgreSQL on SIGTERM.
		"--pdeathsig", "TERM",
		"--", patroniBin, n.ConfigFile)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// Stop stops every node (Patroni stops its PostgreSQL), then the DCS, and
// removes the directory. Safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range c.Members {
			if n.proc == nil {
				continue
			}
			wg.Go(func() {
				n.proc.stop(syscall.SIGTERM, 15*time.Second)
				killPostmaster(n.DataDir)
			})
		}
		wg.Wait()
		if c.dcs != nil {
			c.dcs.stop(syscall.SIGTERM, 5*time.Second)
		}
		if c.Dir != "" {
			c.stopErr = os.RemoveAll(c.Dir)
		}
	})
	return c.stopErr
}

// checkAlive returns an error with the log tail of any process that exited.
func (c *Cluster) checkAlive() error {
	var errs []error
	if c.dcs != nil {
		if ok, werr := c.dcs.exited(); ok {
			errs = append(errs, fmt.Errorf("%s exited (%v)\n--- %s log tail ---\n%s", c.dcs.name, werr, c.dcs.name, c.dcs.tail(30)))
		}
	}
	for _, n := range c.Members {
		if n.proc == nil {
			continue
		}
		if ok, werr := n.proc.exited(); ok {
			errs = append(errs, fmt.Errorf("patroni %s exited (%v)\n--- %s log tail ---\n%s", n.Name, werr, n.Name, n.proc.tail(40)))
		}
	}
	return errors.Join(errs...)
}

// logTails is every node's log tail, for error messages.
func (c *Cluster) logTails(lines int) string {
	var b strings.Builder
	for _, n := range c.Members {
		fmt.Fprintf(&b, "\n--- %s log tail (%s) ---\n%s", n.Name, n.LogFile, tailFile(n.LogFile, lines))
	}
	return b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
