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
	startup := wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: "app"}, {Name: "database", Value: "appdb"}})
	query := wire.AppendQuery(nil, "SELECT 1")
	open := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			b.Fatal(err)
		}
		rd := wire.NewReader(c, 0)
		c.Write(startup)
		for sent := false; ; {
			m, err := rd.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			if m.Type() == wire.MsgErrorResponse {
				b.Fatalf("login: %q", m)
			}
			if m.Type() == wire.MsgReadyForQuery {
				if sent {
					return c
				}
				c.Write(query)
				sent = true
			}
		}
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
