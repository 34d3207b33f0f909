package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// TestListenOnEveryAddress: listen_addr = "127.0.0.1, ::1" serves clients
// on both.
func TestListenOnEveryAddress(t *testing.T) {
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	} else {
		l.Close()
	}
	p := proxytest.Start(t, fmt.Sprintf(`
[proxy]
listen_addr = "127.0.0.1, ::1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "scram-sha-256"
auth_file = "{{dir}}/userlist.txt"

[databases.appdb]
host = "127.0.0.1"
port = %d
`, pg.Port), proxytest.WithFile("userlist.txt", `"app" "apppass"`+"\n"))
	if n := len(p.Server.Addrs()); n != 2 {
		t.Fatalf("listening on %v, want 2 addresses", p.Server.Addrs())
	}
	ctx := context.Background()
	for _, host := range []string{"127.0.0.1", "::1"} {
		dsn := fmt.Sprintf("postgres://app:apppass@%s/appdb?sslmode=disable", net.JoinHostPort(host, strconv.Itoa(p.Port)))
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect through %s: %v", host, err)
		}
		var v int
		err = c.QueryRow(ctx, "SELECT 41 + 1").Scan(&v)
		c.Close(ctx)
		if err != nil || v != 42 {
			t.Fatalf("query through %s: %v %d", host, err, v)
		}
	}
}
