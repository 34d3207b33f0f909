package proxy_test

import (
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// BenchmarkIdleClients measures what an idle, logged-in client costs the
// proxy: heap and goroutine stack per client, from runtime.MemStats with
// idleClients connected (each logged in and having run one query) against
// none. The clients are raw sockets in the same process, a few hundred
// bytes each, counted in. bench/ measures the same from outside (RSS).
// PAUSEPROXY_HEAP_PROFILE=FILE writes a heap profile with the clients
// connected. Run with -benchtime 1x.
func BenchmarkIdleClients(b *testing.B) {
	const idleClients = 1000
	p := startProxy(b, proxyOptions{AuthType: "trust", PoolSize: 2})
	open := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			b.Fatal(err)
		}
		loginAndSelect(b, c, wire.NewReader(c, 0))
		return c
	}
	if os.Getenv("PAUSEPROXY_HEAP_PROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	open().Close() // dials the pool
	for range b.N {
		before := memUse()
		conns := make([]net.Conn, idleClients)
		for i := range conns {
			conns[i] = open()
		}
		after := memUse()
		if f := os.Getenv("PAUSEPROXY_HEAP_PROFILE"); f != "" {
			w, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			pprof.WriteHeapProfile(w)
			w.Close()
		}
		b.ReportMetric(float64(after.heap-before.heap)/idleClients, "heap-B/client")
		b.ReportMetric(float64(after.stack-before.stack)/idleClients, "stack-B/client")
		for _, c := range conns {
			c.Close()
		}
	}
}

type memSample struct{ heap, stack uint64 }

func memUse() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, stack: ms.StackInuse}
}

// loginAndSelect is a raw client's login as app to appdb (trust) and one
// SELECT 1 over c, read through rd, up to the ReadyForQuery that ends it.
func loginAndSelect(b *testing.B, c net.Conn, rd *wire.Reader) {
	c.Write(appStartup)
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
				return
			}
			c.Write(selectOne)
			sent = true
		}
	}
}

// The raw client's messages, built once so that they do not count in the
// benchmarks' allocations.
var (
	appStartup = wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: "app"}, {Name: "database", Value: "appdb"}})
	selectOne  = wire.AppendQuery(nil, "SELECT 1")
)
