package proxy_test

import (
	"net"
	"testing"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// BenchmarkConnectPerTransaction is pgbench -C through the proxy in one
// process: per op, a client connects, logs in (trust), runs SELECT 1 and
// terminates. The client is raw sockets and wire helpers, so allocs/op is
// almost all the proxy's login and session setup.
func BenchmarkConnectPerTransaction(b *testing.B) {
	p := startProxy(b, proxyOptions{AuthType: "trust", PoolSize: 2})
	startup := wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: "app"}, {Name: "database", Value: "appdb"}})
	query := wire.AppendQuery(nil, "SELECT 1")
	terminate := []byte{wire.MsgTerminate, 0, 0, 0, 4}
	rd := wire.NewReader(nil, 0)
	once := func() {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		rd.Reset(c)
		c.Write(startup)
		for sent := false; ; {
			m, err := rd.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			switch m.Type() {
			case wire.MsgErrorResponse:
				b.Fatalf("%q", m)
			case wire.MsgReadyForQuery:
				if sent {
					c.Write(terminate)
					return
				}
				c.Write(query)
				sent = true
			}
		}
	}
	once() // dials the pool
	b.ReportAllocs()
	for b.Loop() {
		once()
	}
}
