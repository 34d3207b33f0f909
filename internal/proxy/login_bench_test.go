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
	terminate := []byte{wire.MsgTerminate, 0, 0, 0, 4}
	rd := wire.NewReader(nil, 0)
	once := func() {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		rd.Reset(c)
		loginAndSelect(b, c, rd)
		c.Write(terminate)
	}
	once() // dials the pool
	b.ReportAllocs()
	for b.Loop() {
		once()
	}
}
