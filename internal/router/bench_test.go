package router_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// Hot-path benchmarks: one client drives transactions through an
// in-process proxy in front of a real PostgreSQL, and the same client
// straight to PostgreSQL is the baseline. Run with
//
//	go test -run XXX -bench . -benchmem ./internal/router/
//
// allocs/op counts the whole process: the pgconn client and the proxy. The
// custom metric proxy-allocs/op subtracts what the same client allocates
// for the same operation against PostgreSQL directly, leaving the proxy's
// allocations per transaction (plus the little that background goroutines
// such as pool maintenance allocate meanwhile).

// pg is the package's PostgreSQL cluster; it is started only when
// benchmarks run (see TestMain).
var pg *pgtest.Cluster

// asyncCloseLeak is pgconn's close of a connection in the background; it
// ends on its own shortly after.
var asyncCloseLeak = goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1")

// TestMain starts PostgreSQL only for benchmarks: the package's tests and
// fuzz targets (stmts_fuzz_test.go) do not need a server, and each fuzz
// worker process runs TestMain again. A test that needs PostgreSQL must
// change this to call pgtest.Main always.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		goleak.VerifyTestMain(m, asyncCloseLeak)
		return
	}
	pgtest.Main(m, pgtest.Options{}, func(c *pgtest.Cluster) { pg = c }, asyncCloseLeak)
}

// startBenchProxy serves database "bench" (PostgreSQL's "postgres" database
// on pg, logged in as the superuser) in the given pool mode and size, with
// trust authentication for clients, until the benchmark ends. It returns
// the address to connect to.
func startBenchProxy(b *testing.B, poolMode string, poolSize int) string {
	b.Helper()
	p := proxytest.Start(b, fmt.Sprintf(`[proxy]
listen_addr = "127.0.0.1"
listen_port = {{port}}
unix_socket_dir = ""
auth_type = "trust"
pool_mode = %q
default_pool_size = %d
max_client_conn = 100

[databases.bench]
host = "127.0.0.1"
port = %d
dbname = "postgres"
user = %q
password = %q
`, poolMode, poolSize, pg.Port, pgtest.Superuser, pgtest.SuperuserPassword), proxytest.WithLog(slog.New(slog.DiscardHandler)))
	return p.Addr
}

// dial connects a pgconn client to addr ("" for PostgreSQL directly),
// closed when the benchmark ends.
func dial(b *testing.B, addr string) *pgconn.PgConn {
	b.Helper()
	url := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pgtest.Superuser, pgtest.SuperuserPassword, addr, "bench")
	if addr == "" {
		url = fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/postgres?sslmode=disable", pgtest.Superuser, pgtest.SuperuserPassword, pg.Port)
	}
	c, err := pgconn.Connect(context.Background(), url)
	if err != nil {
		b.Fatalf("connect %s: %v", url, err)
	}
	b.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// op is one transaction a benchmark repeats.
type op struct {
	name string
	// prepare runs once per client connection.
	prepare func(context.Context, *pgconn.PgConn) error
	run     func(context.Context, *pgconn.PgConn) error
}

var (
	selectOne = op{
		name: "simple",
		run: func(ctx context.Context, c *pgconn.PgConn) error {
			return c.Exec(ctx, "SELECT 1").Close()
		},
	}
	params    = [][]byte{[]byte("1")}
	execParam = op{
		name: "extended",
		run: func(ctx context.Context, c *pgconn.PgConn) error {
			_, err := c.ExecParams(ctx, "SELECT $1::int4", params, nil, nil, nil).Close()
			return err
		},
	}
	execPrepared = op{
		name: "prepared",
		prepare: func(ctx context.Context, c *pgconn.PgConn) error {
			_, err := c.Prepare(ctx, "bench_stmt", "SELECT $1::int4", nil)
			return err
		},
		run: func(ctx context.Context, c *pgconn.PgConn) error {
			_, err := c.ExecPrepared(ctx, "bench_stmt", params, nil, nil).Close()
			return err
		},
	}
)

// mallocs is the process's allocation count so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

var (
	clientAllocsMu sync.Mutex
	clientAllocs   = map[string]float64{}
)

// clientAllocsPerOp measures, once per op, what the client alone allocates
// for one run of o against PostgreSQL directly.
func clientAllocsPerOp(b *testing.B, o op) float64 {
	b.Helper()
	clientAllocsMu.Lock()
	defer clientAllocsMu.Unlock()
	if v, ok := clientAllocs[o.name]; ok {
		return v
	}
	ctx := context.Background()
	c := dial(b, "")
	if o.prepare != nil {
		if err := o.prepare(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	const warm, n = 200, 2000
	for range warm {
		if err := o.run(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	before := mallocs()
	for range n {
		if err := o.run(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	v := float64(mallocs()-before) / n
	clientAllocs[o.name] = v
	return v
}

// benchSequential runs o on clients in turn (one transaction at a time)
// and reports the proxy's allocations per transaction unless direct.
func benchSequential(b *testing.B, o op, clients []*pgconn.PgConn, direct bool) {
	ctx := context.Background()
	for _, c := range clients {
		if o.prepare != nil {
			if err := o.prepare(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
		// Warm up: server connections dialed, statements prepared on
		// them, buffers grown.
		for range 20 {
			if err := o.run(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	}
	var base float64
	if !direct {
		base = clientAllocsPerOp(b, o)
	}
	b.ReportAllocs()
	before := mallocs()
	i := 0
	for b.Loop() {
		if err := o.run(ctx, clients[i%len(clients)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	total := float64(mallocs()-before) / float64(b.N)
	if !direct {
		b.ReportMetric(total-base, "proxy-allocs/op")
	}
}

// BenchmarkSimpleQueryTransaction: one "SELECT 1" simple Query per
// iteration through the proxy in transaction mode, so each is a
// transaction that binds and releases a server connection.
func BenchmarkSimpleQueryTransaction(b *testing.B) {
	addr := startBenchProxy(b, "transaction", 5)
	benchSequential(b, selectOne, []*pgconn.PgConn{dial(b, addr)}, false)
}

// BenchmarkDirectSimpleQuery is BenchmarkSimpleQueryTransaction straight
// to PostgreSQL: the baseline for latency and client allocations.
func BenchmarkDirectSimpleQuery(b *testing.B) {
	benchSequential(b, selectOne, []*pgconn.PgConn{dial(b, "")}, true)
}

// BenchmarkExtendedBatch: Parse (unnamed), Bind, Describe, Execute, Sync
// per iteration (pgconn ExecParams) through the proxy in transaction mode.
func BenchmarkExtendedBatch(b *testing.B) {
	addr := startBenchProxy(b, "transaction", 5)
	benchSequential(b, execParam, []*pgconn.PgConn{dial(b, addr)}, false)
}

// BenchmarkDirectExtendedBatch is BenchmarkExtendedBatch straight to
// PostgreSQL.
func BenchmarkDirectExtendedBatch(b *testing.B) {
	benchSequential(b, execParam, []*pgconn.PgConn{dial(b, "")}, true)
}

// BenchmarkPreparedStatement: Bind/Execute/Sync of a named statement each
// client prepared once, in transaction mode with fewer server connections
// than clients, so every Bind goes through the statement rewrite (the
// client's name to the proxy's shared server-side name). "sequential"
// runs one transaction at a time over 4 clients and a pool of 2;
// "parallel" runs 4 clients per core at once over a pool of 2, so clients
// also queue for a server connection.
func BenchmarkPreparedStatement(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		addr := startBenchProxy(b, "transaction", 2)
		clients := make([]*pgconn.PgConn, 4)
		for i := range clients {
			clients[i] = dial(b, addr)
		}
		benchSequential(b, execPrepared, clients, false)
	})
	b.Run("parallel", func(b *testing.B) {
		addr := startBenchProxy(b, "transaction", 2)
		ctx := context.Background()
		const perCore = 4
		n := perCore * runtime.GOMAXPROCS(0)
		clients := make(chan *pgconn.PgConn, n)
		for range n {
			c := dial(b, addr)
			if err := execPrepared.prepare(ctx, c); err != nil {
				b.Fatal(err)
			}
			clients <- c
		}
		// Warm up as benchSequential does: every client's statement on
		// every server connection, the pool's queue at its working
		// size, so a short -benchtime measures the steady state.
		warm := make([]*pgconn.PgConn, 0, n)
		for range n {
			warm = append(warm, <-clients)
		}
		var wg sync.WaitGroup
		for _, c := range warm {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					if err := execPrepared.run(ctx, c); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, c := range warm {
			clients <- c
		}
		base := clientAllocsPerOp(b, execPrepared)
		b.SetParallelism(perCore)
		b.ReportAllocs()
		before := mallocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c := <-clients
			defer func() { clients <- c }()
			for pb.Next() {
				if err := execPrepared.run(ctx, c); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(mallocs()-before)/float64(b.N)-base, "proxy-allocs/op")
	})
}

// BenchmarkDirectPreparedStatement is the prepared statement straight to
// PostgreSQL, one client.
func BenchmarkDirectPreparedStatement(b *testing.B) {
	benchSequential(b, execPrepared, []*pgconn.PgConn{dial(b, "")}, true)
}
