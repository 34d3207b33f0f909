package proxy

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// needIPv6Loopback skips, saying why, on a machine without ::1.
func needIPv6Loopback(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	l.Close()
}

// freeTCPPort returns a port free on both 127.0.0.1 and ::1 when it was
// asked (the kernel hands out ports for both families from one range).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func listenerAddrs(ls []net.Listener) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Addr().String())
	}
	slices.Sort(out)
	return out
}

func TestListenTCP(t *testing.T) {
	needIPv6Loopback(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		addrs []string
		want  func(port string) []string // listening addresses, sorted
		dial  []string                   // hosts that must connect
	}{
		{
			name: "IPv4 and IPv6 loopback", addrs: []string{"127.0.0.1", "::1"},
			want: func(p string) []string { return []string{"127.0.0.1:" + p, "[::1]:" + p} },
			dial: []string{"127.0.0.1", "::1"},
		},
		{
			name: "every address", addrs: []string{"*"},
			want: func(p string) []string { return []string{"[::]:" + p} },
			dial: []string{"127.0.0.1", "::1"},
		},
		{
			name: "host name and one of its addresses", addrs: []string{"localhost", "127.0.0.1"},
			dial: []string{"127.0.0.1"},
		},
		{name: "none", addrs: nil, want: func(string) []string { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freeTCPPort(t)
			ls, err := listenTCP(ctx, "pauseproxy.toml", tc.addrs, port)
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll(ls)
			p := strconv.Itoa(port)
			got := listenerAddrs(ls)
			if tc.want != nil && !slices.Equal(got, tc.want(p)) {
				t.Errorf("listening on %q, want %q", got, tc.want(p))
			}
			if len(got) != len(slices.Compact(slices.Clone(got))) {
				t.Errorf("an address is bound twice: %q", got)
			}
			for _, h := range tc.dial {
				c, err := net.Dial("tcp", net.JoinHostPort(h, p))
				if err != nil {
					t.Errorf("dial %s: %v", h, err)
					continue
				}
				c.Close()
			}
		})
	}
}

// A failure names the file, the key and the entry, and closes what was
// opened before it.
func TestListenTCPFailure(t *testing.T) {
	needIPv6Loopback(t)
	ctx := context.Background()
	port := freeTCPPort(t)
	busy, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = listenTCP(ctx, "/etc/pauseproxy/pauseproxy.toml", []string{"127.0.0.1", "::1"}, port)
	if err == nil || !strings.Contains(err.Error(), `/etc/pauseproxy/pauseproxy.toml: listen_addr "::1": listen tcp [::1]:`) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %v", err)
	}
	// 127.0.0.1 was released.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("127.0.0.1 still bound after the failure: %v", err)
	}
	l.Close()

	_, err = listenTCP(ctx, "pgbouncer.ini", []string{"no-such-host.invalid"}, port)
	if err == nil || !strings.HasPrefix(err.Error(), `pgbouncer.ini: listen_addr "no-such-host.invalid": resolve: `) {
		t.Fatalf("error %v", err)
	}
}
