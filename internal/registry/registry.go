// Package registry is pauseproxy's own Consul registration: a serving
// instance registers itself (Registrar), and the operator commands find
// every registered instance (Lookup) to pause them together, as they do
// the config's [proxy] peers.
//
// One instance is one Consul service instance of the service
// consul_register_service ("pauseproxy"), with the ID
// "<service>-<host>-<port>" of the address the others dial
// (consul_register_advertise), that address and port, the tags of
// consul_register_tags, and Meta "databases" (the database names it serves,
// comma-separated; left out when longer than Consul's 512 bytes) and
// "version". Its check is a TTL check the process passes every
// ttlInterval; Consul deregisters an instance whose check stayed critical
// for deregisterAfter, so that a crashed one goes by itself.
//
// The package talks to the local Consul agent only. It owns no traffic and
// decides nothing about pausing: package ops reads what Lookup returns. It
// imports config and Consul's API client, nothing else of the project.
package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// Meta keys of a registration.
const (
	MetaDatabases = "databases"
	MetaVersion   = "version"
)

// maxMetaValue is Consul's limit on one Meta value (agent/structs,
// metaValueMaxLength).
const maxMetaValue = 512

// requestTimeout bounds one request to the agent.
const requestTimeout = 5 * time.Second

// ServiceID is the Consul service ID of the instance p describes: unique
// per advertised address, so that two instances on one host differ by
// port, and the same instance keeps its ID across restarts. An instance
// advertising its node's address (no host) is "<service>-<port>": IDs are
// unique per Consul node, which tells such instances apart.
func ServiceID(p *config.Proxy) string {
	host, port, _ := net.SplitHostPort(p.ConsulRegisterAdvertise)
	if host == "" {
		return p.ConsulRegisterService + "-" + port
	}
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, host)
	return p.ConsulRegisterService + "-" + clean + "-" + port
}

// newClient is a client of the agent p names. The caller closes the
// transport's idle connections when done with it.
func newClient(p *config.Proxy) (*api.Client, *http.Transport, error) {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSHandshakeTimeout:   2 * time.Second,
		ResponseHeaderTimeout: requestTimeout,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
	}
	c, err := api.NewClient(&api.Config{
		Address:   p.ConsulRegisterAddr,
		Scheme:    p.ConsulRegisterScheme,
		Token:     p.ConsulRegisterToken,
		TLSConfig: api.TLSConfig{CAFile: p.ConsulRegisterCAFile},
		Transport: tr,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("consul agent %s: %w", p.ConsulRegisterAddr, err)
	}
	return c, tr, nil
}

// Instance is one registered pauseproxy, as Lookup found it.
type Instance struct {
	ID   string // Consul service ID
	Addr string // "host:port" of its listener (and admin console)
	Node string // the Consul node it registered on
	// Status is its check's: passing, warning or critical.
	Status string
	// Databases are the names it serves (its Meta), nil when its
	// registration does not say.
	Databases []string
}

// Serves reports whether the instance serves database db, as far as its
// registration says: a registration that lists none, or lists the
// fallback "*", may serve any.
func (in Instance) Serves(db string) bool {
	return in.Databases == nil || slices.Contains(in.Databases, db) || slices.Contains(in.Databases, "*")
}

// Lookup returns every instance registered under cfg's service, whatever
// the state of its check, except cfg's own (its ID on the agent's node),
// sorted by address, and the name of the agent's node (an instance on
// another node that registered a loopback address cannot be reached from
// here). An instance registered without an address has its node's. It
// needs consul_register.
func Lookup(ctx context.Context, cfg *config.Config) ([]Instance, string, error) {
	p := &cfg.Proxy
	client, tr, err := newClient(p)
	if err != nil {
		return nil, "", err
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	entries, _, err := client.Health().Service(p.ConsulRegisterService, "", false, q)
	if err != nil {
		return nil, "", fmt.Errorf("consul agent %s: health of service %s: %w", p.ConsulRegisterAddr, p.ConsulRegisterService, err)
	}
	node, err := client.Agent().NodeName()
	if err != nil {
		return nil, "", fmt.Errorf("consul agent %s: node name: %w", p.ConsulRegisterAddr, err)
	}
	self := ServiceID(p)
	var out []Instance
	for _, e := range entries {
		if e.Service == nil || e.Node == nil || (e.Service.ID == self && e.Node.Node == node) {
			continue
		}
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		in := Instance{ID: e.Service.ID, Addr: net.JoinHostPort(host, strconv.Itoa(e.Service.Port)), Node: e.Node.Node, Status: e.Checks.AggregatedStatus()}
		if dbs, ok := e.Service.Meta[MetaDatabases]; ok {
			in.Databases = strings.Split(dbs, ",")
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.Addr, b.Addr) })
	return out, node, nil
}

// registration is what the Registrar keeps registered, computed from a
// config.
func registration(cfg *config.Config, version string) *api.AgentServiceRegistration {
	p := &cfg.Proxy
	host, port, _ := net.SplitHostPort(p.ConsulRegisterAdvertise)
	n, _ := strconv.Atoi(port)
	id := ServiceID(p)
	meta := map[string]string{}
	if version != "" {
		meta[MetaVersion] = version
	}
	names := make([]string, 0, len(cfg.Databases))
	for name := range cfg.Databases {
		names = append(names, name)
	}
	slices.Sort(names)
	if dbs := strings.Join(names, ","); len(dbs) <= maxMetaValue && !slices.ContainsFunc(names, func(s string) bool { return strings.Contains(s, ",") }) {
		meta[MetaDatabases] = dbs
	}
	return &api.AgentServiceRegistration{
		ID:      id,
		Name:    p.ConsulRegisterService,
		Address: host,
		Port:    n,
		Tags:    slices.Clone(p.ConsulRegisterTags),
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        checkID(id),
			Name:                           "pauseproxy is running",
			TTL:                            ttl.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: deregisterAfter.String(),
		},
	}
}

func checkID(serviceID string) string { return serviceID + ":alive" }
