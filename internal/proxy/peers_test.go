package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Cancel requests across instances (PgBouncer 1.19+ peering): two proxies
// with peer_id 1 and 2 and the same [peers] tables. The cancel keys proxy 1
// hands out carry its id in PgBouncer's layout; a query running through
// proxy 1 is cancelled by a CancelRequest sent to proxy 2, which forwards
// it, and closes the requester's connection only after the cancel got
// through.
func TestCancelThroughPeer(t *testing.T) {
	peers := func(ports ...int) string {
		var b strings.Builder
		for i, port := range ports {
			fmt.Fprintf(&b, "\n[peers.%d]\nhost = \"127.0.0.1\"\nport = %d\n", i+1, port)
		}
		return b.String()
	}
	// proxy 1 starts knowing no peer; once proxy 2 has a port, both know
	// both (proxy 1 by a reload, as an operator would do).
	opts1 := func(peerTables string) proxyOptions { return proxyOptions{Extra: "peer_id = 1\n" + peerTables} }
	p1 := startProxy(t, opts1(""))
	p2 := startProxy(t, proxyOptions{Extra: "peer_id = 2\n" + peers(p1.Port) + "[peers.2]\nhost = \"127.0.0.1\"\nport = {{port}}\n"})
	p1.Reload(t, proxyTOML(opts1(peers(p1.Port, p2.Port))))

	ctx := context.Background()
	c, err := pgconn.Connect(ctx, p1.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	pid, secret := c.PID(), binary.BigEndian.Uint32(c.SecretKey())
	if id := int(pid>>16&0xff) | int(pid>>8&0xff)<<8; id != 1 || secret&3 != 3 || pid>>31 != 0 {
		t.Fatalf("cancel key %08x %08x: peer id %d, TTL %d; want 1 and 3, positive PID", pid, secret, id, secret&3)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "SELECT pg_sleep(5)").ReadAll()
		errc <- err
	}()
	waitForQuery(t, "SELECT pg_sleep(5)")

	start := time.Now()
	cc, err := net.Dial("tcp", p2.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	cc.Write(wire.AppendCancelRequest(nil, pid, c.SecretKey()))
	if rest, err := io.ReadAll(cc); err != nil || len(rest) > 0 {
		t.Fatalf("cancel connection to proxy 2: %q, %v; want a quiet close", rest, err)
	}
	select {
	case err := <-errc:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "57014" {
			t.Fatalf("want query_canceled 57014, got %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the cancel took %s", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the query was not cancelled")
	}

	// A key of a peer nobody configured, and a key whose TTL is spent,
	// are dropped quietly.
	for _, k := range []struct{ pid, secret uint32 }{
		{pid&^0x00ffff00 | 7<<16, secret},
		{pid&^0x00ffff00 | 2<<16, secret &^ 3},
	} {
		cc, err := net.Dial("tcp", p1.Addr)
		if err != nil {
			t.Fatal(err)
		}
		cc.SetDeadline(time.Now().Add(10 * time.Second))
		key := binary.BigEndian.AppendUint32(nil, k.secret)
		cc.Write(wire.AppendCancelRequest(nil, k.pid, key))
		expectQuietClose(t, cc)
		cc.Close()
	}
}

// waitForQuery waits until PostgreSQL runs query.
func waitForQuery(t *testing.T, query string) {
	t.Helper()
	ctx := context.Background()
	proxytest.Eventually(t, 10*time.Second, "query "+query+" running", func() bool {
		c, err := pgconn.Connect(ctx, pg.DSN("postgres", "postgres", "postgres"))
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		res := c.ExecParams(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1", [][]byte{[]byte(query)}, nil, nil, nil).Read()
		return res.Err == nil && len(res.Rows) == 1 && string(res.Rows[0][0]) == "1"
	})
}
