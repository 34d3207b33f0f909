package ops

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/pauseproxy/pauseproxy/internal/config"
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

// PeerConsoles returns the admin consoles of cfg's peers, logged into as
// the local one.
func PeerConsoles(cfg *config.Config) ([]*Console, error) {
	if len(cfg.Proxy.Peers) == 0 {
		return nil, nil
	}
	login, err := AdminLogin(cfg)
	if err != nil {
		return nil, err
	}
	var out []*Console
	for _, peer := range cfg.Proxy.Peers {
		// Validated as host:port when the config was loaded.
		host, port, _ := net.SplitHostPort(peer)
		n, _ := strconv.Atoi(port)
		c, err := NewConsole(host, n, login)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Consoles returns the local console followed by the peers' (all: false
// leaves the peers out).
func Consoles(cfg *config.Config, all bool) ([]Proxy, error) {
	local, err := LocalConsole(cfg)
	if err != nil {
		return nil, err
	}
	out := []Proxy{local}
	if !all {
		return out, nil
	}
	peers, err := PeerConsoles(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		out = append(out, p)
	}
	return out, nil
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
