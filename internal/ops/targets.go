package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/registry"
)

// LocalConsole returns the admin console of the proxy that cfg describes:
// over TCP on listen_addr (loopback when it listens on every address),
// else over its Unix socket.
func LocalConsole(cfg *config.Config) (*Console, error) {
	login, err := AdminLogin(cfg)
	if err != nil {
		return nil, err
	}
	p := cfg.Proxy
	host := p.ListenAddr
	switch host {
	case "":
		host = p.UnixSocketDir
	case "*", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return NewConsole(host, p.ListenPort, login)
}

// PeerConsoles returns the admin consoles of the other proxies in front of
// the same databases, logged into as the local one: cfg's peers and, with
// consul_register, every instance registered in Consul under
// consul_register_service except this one, once each (by address).
//
// Registered instances count whatever their check says: a proxy whose
// check fails (hung, or cut off from its agent) may still serve clients,
// and the commands are all or nothing, so one that cannot be paused fails
// the command rather than being skipped; a crashed one is deregistered by
// Consul about a minute after its check went critical. Only an instance
// whose registration says it does not serve db ("" : any) is left out. An
// instance on another node that registered a loopback address cannot be
// reached from here: an error. So is a Consul that cannot be asked: the
// commands must not pause fewer proxies than there are. log gets a line
// per instance left out.
func PeerConsoles(ctx context.Context, cfg *config.Config, db string, log *slog.Logger) ([]*Console, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Proxy.Peers) == 0 && !cfg.Proxy.ConsulRegister {
		return nil, nil
	}
	login, err := AdminLogin(cfg)
	if err != nil {
		return nil, err
	}
	var out []*Console
	seen := map[string]*Console{}
	if local, err := LocalConsole(cfg); err == nil {
		seen[local.Name()] = nil
	}
	if cfg.Proxy.ConsulRegister {
		seen[cfg.Proxy.ConsulRegisterAdvertise] = nil
	}
	for _, peer := range cfg.Proxy.Peers {
		// Validated as host:port when the config was loaded.
		host, port, _ := net.SplitHostPort(peer)
		n, _ := strconv.Atoi(port)
		c, err := NewConsole(host, n, login)
		if err != nil {
			return nil, err
		}
		c.from = "peers"
		seen[c.Name()] = c
		out = append(out, c)
	}
	if !cfg.Proxy.ConsulRegister {
		return out, nil
	}
	found, node, err := registry.Lookup(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("find the other proxies registered in Consul (consul_register): %w; refusing to go on with only some of them", err)
	}
	var errs []error
	for _, in := range found {
		host, port, _ := net.SplitHostPort(in.Addr)
		where := fmt.Sprintf("consul %s on node %s, check %s", in.ID, in.Node, in.Status)
		switch prev, dup := seen[in.Addr]; {
		case dup && prev != nil:
			prev.from += ", " + where
			continue
		case dup:
			continue // this proxy
		case db != "" && !in.Serves(db):
			log.Info("registered proxy left out: it does not serve the database", slog.String("proxy", in.Addr),
				slog.String("database", db), slog.String("from", where))
			continue
		case isLoopback(host) && in.Node != node:
			errs = append(errs, fmt.Errorf("%s (%s) registered a loopback address, which cannot reach it from node %s: set its consul_register_advertise", in.Addr, where, node))
			continue
		}
		n, _ := strconv.Atoi(port)
		c, err := NewConsole(host, n, login)
		if err != nil {
			return nil, err
		}
		c.from = where
		if in.Status != "passing" {
			c.hint = fmt.Sprintf(" (its Consul check is %s: if it is gone, Consul deregisters it about a minute after the check went critical, or: consul services deregister -id=%s)", in.Status, in.ID)
		}
		seen[in.Addr] = c
		out = append(out, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Consoles returns the local console followed by the other proxies'
// (PeerConsoles; all: false leaves them out).
func Consoles(ctx context.Context, cfg *config.Config, all bool, db string, log *slog.Logger) ([]Proxy, error) {
	local, err := LocalConsole(cfg)
	if err != nil {
		return nil, err
	}
	local.from = "this proxy"
	out := []Proxy{local}
	if !all {
		return out, nil
	}
	peers, err := PeerConsoles(ctx, cfg, db, log)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		out = append(out, p)
	}
	return out, nil
}

// Describe lists proxies for people, each with where it came from when it
// says ("127.0.0.1:6432 (this proxy), 10.0.1.6:6432 (peers)").
func Describe(proxies []Proxy) string {
	parts := make([]string, len(proxies))
	for i, p := range proxies {
		parts[i] = p.Name()
		if f, ok := p.(interface{ From() string }); ok && f.From() != "" {
			parts[i] += " (" + f.From() + ")"
		}
	}
	return strings.Join(parts, ", ")
}

// AdminLogin is the login of the operator commands: the first of
// admin_users, with its password from [users.<name>] (password,
// password_env or password_file) or from auth_file when it is stored in
// clear text. Otherwise the password is left to libpq's sources
// (PGPASSWORD, ~/.pgpass), or to auth_type = "trust".
func AdminLogin(cfg *config.Config) (ConsoleLogin, error) {
	if len(cfg.Proxy.AdminUsers) == 0 {
		return ConsoleLogin{}, fmt.Errorf("%s: proxy.admin_users is empty: the operator commands log into the admin console as the first admin user", cfg.File)
	}
	user := cfg.Proxy.AdminUsers[0]
	login := ConsoleLogin{User: user}
	if u, ok := cfg.Users[user]; ok && u.Password != "" && !isHash(u.Password) {
		login.Password = u.Password
		return login, nil
	}
	if cfg.Proxy.AuthFile != "" {
		m, err := config.ParseAuthFile(cfg.Proxy.AuthFile)
		var ce *config.Error
		if err != nil && !errors.As(err, &ce) {
			return ConsoleLogin{}, fmt.Errorf("read the admin password: %w", err)
		}
		if pw := m[user]; pw != "" && !isHash(pw) {
			login.Password = pw
		}
	}
	return login, nil
}

// isHash reports whether a stored password is an MD5 hash or a SCRAM
// secret, which cannot log in from the client side.
func isHash(pw string) bool {
	if strings.HasPrefix(pw, "SCRAM-SHA-256$") {
		return true
	}
	if len(pw) != 35 || !strings.HasPrefix(pw, "md5") {
		return false
	}
	for _, r := range pw[3:] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
