package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// resolveTimeout bounds the lookup of a listen_addr host name at start.
const resolveTimeout = 10 * time.Second

// listenTCP opens one TCP listener per address of listen_addr (addrs, as
// validated by internal/config), on port, as PgBouncer does: an IP address
// as it is, "*" every address (one dual-stack socket, IPv4 and IPv6), and
// a host name every address it resolves to, not just the first one as
// net.Listen would. An address reached twice (localhost and 127.0.0.1) is
// bound once. On failure it closes what it opened and returns an error
// naming file, the key and the entry. No entries, no listeners.
func listenTCP(ctx context.Context, file string, addrs []string, port int) ([]net.Listener, error) {
	// SO_KEEPALIVE with the operating system's timings, as PgBouncer's
	// tcp_keepalive = 1 does; Go's default would add three more
	// setsockopt calls per client to set its own.
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
	var ls []net.Listener
	fail := func(entry string, err error) ([]net.Listener, error) {
		closeAll(ls)
		return nil, fmt.Errorf("%s: listen_addr %q: %w", file, entry, err)
	}
	bound := map[string]bool{}
	for _, entry := range addrs {
		hosts := []string{entry}
		switch {
		case entry == "*":
			hosts = []string{""}
		case net.ParseIP(entry) == nil:
			rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
			ips, err := net.DefaultResolver.LookupIPAddr(rctx, entry)
			cancel()
			if err != nil {
				return fail(entry, fmt.Errorf("resolve: %w", err))
			}
			hosts = hosts[:0]
			for _, ip := range ips {
				hosts = append(hosts, ip.String())
			}
		}
		for _, h := range hosts {
			addr := net.JoinHostPort(h, strconv.Itoa(port))
			if bound[addr] {
				continue
			}
			l, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				return fail(entry, err)
			}
			bound[addr] = true
			ls = append(ls, l)
		}
	}
	return ls, nil
}
