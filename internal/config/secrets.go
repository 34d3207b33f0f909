package config

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// secret resolves a secret that may be given inline (name), from the
// environment (name_env) or from a file (name_file): at most one of the
// three. The value is never part of a message.
func (b *builder) secret(prefix []string, set map[string]bool, name string, value, env, file *string) {
	forms := []string{name, name + "_env", name + "_file"}
	n := 0
	for _, f := range forms {
		if set[f] {
			n++
		}
	}
	if n > 1 {
		b.problem(keyOf(prefix), "set only one of %s, %s and %s", forms[0], forms[1], forms[2])
		return
	}
	switch {
	case set[name+"_env"]:
		key := keyOf(prefix, name+"_env")
		if *env == "" {
			b.problem(key, "must name an environment variable")
			return
		}
		v, ok := os.LookupEnv(*env)
		switch {
		case !ok:
			b.secretMissing(key, "environment variable %s is not set", *env)
		case v == "":
			b.secretMissing(key, "environment variable %s is empty", *env)
		default:
			*value = v
		}
	case set[name+"_file"]:
		key := keyOf(prefix, name+"_file")
		if *file == "" {
			b.problem(key, "must name a file")
			return
		}
		data, err := os.ReadFile(*file)
		if err != nil {
			b.secretMissing(key, "%s", readProblem(*file, err))
			return
		}
		// Files written by echo or an editor end with a newline that is
		// not part of the secret.
		v := strings.TrimRight(string(data), "\r\n")
		if v == "" {
			b.secretMissing(key, "%s is empty", *file)
			return
		}
		*value = v
	}
}

// normalizeHosts turns hosts entries ("h", "h:5433", "[::1]:5433", "::1",
// "/var/run/postgresql") into host:port addresses, port defaulting to
// port. It also returns the first address's host and port.
func (b *builder) normalizeHosts(key string, hosts []string, port int) (addrs []string, firstHost string, firstPort int) {
	if len(hosts) == 0 {
		b.problem(key, "must list at least one host")
		return nil, "", port
	}
	addrs = make([]string, 0, len(hosts))
	for _, h := range hosts {
		host, p, err := splitHost(h, port)
		if err != "" {
			b.problem(key, "entry %q: %s", h, err)
			continue
		}
		if len(addrs) == 0 {
			firstHost, firstPort = host, p
		}
		addrs = append(addrs, joinHostPort(host, p))
	}
	if len(addrs) == 0 {
		return nil, "", port
	}
	return addrs, firstHost, firstPort
}

// splitHost splits a hosts entry into host and port, and checks both.
func splitHost(entry string, defaultPort int) (string, int, string) {
	host, port, problem := splitHostPort(entry, defaultPort)
	if problem == "" && !strings.HasPrefix(host, "/") && !validHost(host) {
		problem = "want an IP address, a host name or a Unix socket directory"
	}
	return host, port, problem
}

func splitHostPort(entry string, defaultPort int) (string, int, string) {
	if entry == "" {
		return "", 0, "empty host"
	}
	if strings.ContainsFunc(entry, isSpace) {
		return "", 0, "must not contain spaces"
	}
	host, ps, err := net.SplitHostPort(entry)
	if err != nil {
		// No port: a name, an IPv4 address, a bare IPv6 address or a
		// socket directory.
		host = strings.TrimSuffix(strings.TrimPrefix(entry, "["), "]")
		if strings.Contains(host, ":") && net.ParseIP(host) == nil && !strings.HasPrefix(host, "/") {
			return "", 0, `want "host" or "host:port" ("[v6addr]:port" for IPv6)`
		}
		return host, defaultPort, ""
	}
	if host == "" {
		return "", 0, "empty host"
	}
	p, perr := strconv.Atoi(ps)
	if perr != nil || p < 1 || p > 65535 {
		return "", 0, "port must be 1..65535"
	}
	return host, p, ""
}

func joinHostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
