package proxy_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// pgbench runs pgbench against the proxy and returns its output.
func pgbench(t *testing.T, p *testProxy, args ...string) string {
	t.Helper()
	cmd := exec.Command("pgbench", append(args, p.KV("app", "appdb"))...)
	cmd.Env = append(os.Environ(), "PGPASSWORD=apppass")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestPgbenchTPCBConsistent(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 5})
	pgbench(t, p, "-i", "-q", "-s", "1")
	out := pgbench(t, p, "-c", "50", "-j", "2", "-T", "5", "-n")
	m := proxytest.PgbenchFailed.FindStringSubmatch(out)
	if m == nil || m[1] != "0" {
		t.Fatalf("want 0 failed transactions:\n%s", out)
	}
	pm := proxytest.PgbenchProcessed.FindStringSubmatch(out)
	if n, _ := strconv.Atoi(pm[1]); n < 100 {
		t.Fatalf("too few transactions:\n%s", out)
	}
	ctx := context.Background()
	c := p.connect(t, ctx)
	var abal, delta int64
	var hist int64
	if err := c.QueryRow(ctx, "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT coalesce(sum(delta),0) FROM pgbench_history), (SELECT count(*) FROM pgbench_history)").Scan(&abal, &delta, &hist); err != nil {
		t.Fatal(err)
	}
	if abal != delta {
		t.Fatalf("sum(abalance)=%d but sum(delta)=%d", abal, delta)
	}
	if n, _ := strconv.Atoi(pm[1]); int64(n) != hist {
		t.Fatalf("pgbench reported %d transactions, history has %d rows", n, hist)
	}
	// The pool never exceeded its size.
	var backends int
	direct, err := pgx.Connect(ctx, pg.DSN("postgres", "postgres", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").Scan(&backends)
	if backends > 5 {
		t.Fatalf("%d server connections for a pool of 5", backends)
	}
}

func TestCopy100MB(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx := context.Background()
	c := p.connect(t, ctx)
	if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS big; CREATE TABLE big (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	const rows = 100_000
	payload := strings.Repeat("x", 1000)
	var buf bytes.Buffer
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&buf, "%d\t%s\n", i, payload)
	}
	size := buf.Len()
	tag, err := c.PgConn().CopyFrom(ctx, &buf, "COPY big FROM STDIN")
	if err != nil || tag.RowsAffected() != rows {
		t.Fatalf("copy in: %v %v", tag, err)
	}
	var out bytes.Buffer
	tag, err = c.PgConn().CopyTo(ctx, &out, "COPY big TO STDOUT")
	if err != nil || tag.RowsAffected() != rows {
		t.Fatalf("copy out: %v %v", tag, err)
	}
	if out.Len() != size {
		t.Fatalf("copied out %d bytes, in %d", out.Len(), size)
	}
	// A COPY that fails midway leaves the client usable.
	_, err = c.PgConn().CopyFrom(ctx, strings.NewReader("1\tok\nnot-a-number\tbad\n"), "COPY big FROM STDIN")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22P02" {
		t.Fatalf("want invalid_text_representation, got %v", err)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n); err != nil || n != rows {
		t.Fatalf("after failed copy: %v %d", err, n)
	}
	c.Exec(ctx, "DROP TABLE big")
}

func TestThousandClientsSmallPool(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 10, AuthType: "md5"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const clients = 1000
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			c, err := pgconn.Connect(ctx, p.DSN("app", "apppass", "appdb"))
			if err != nil {
				errs <- fmt.Errorf("client %d connect: %w", i, err)
				return
			}
			defer c.Close(ctx)
			res, err := c.Exec(ctx, fmt.Sprintf("SELECT %d", i)).ReadAll()
			if err != nil || string(res[0].Rows[0][0]) != strconv.Itoa(i) {
				errs <- fmt.Errorf("client %d: %v", i, err)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestGarbageLeavesOthersUnharmed(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx := context.Background()
	good := p.connect(t, ctx)

	startup := func(conn net.Conn) {
		// A valid StartupMessage, then authentication by password.
		c, err := pgconn.Connect(ctx, p.DSN("app", "apppass", "appdb"))
		if err == nil {
			c.Close(ctx)
		}
	}
	_ = startup
	cases := []struct {
		name string
		send []byte
	}{
		{"random bytes", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"huge startup length", binary.BigEndian.AppendUint32(nil, 0x7fffffff)},
		{"short startup length", []byte{0, 0, 0, 2, 0, 0}},
		{"bad protocol", append(binary.BigEndian.AppendUint32(nil, 8), 0, 9, 0, 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(tc.send)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			// The proxy answers with an error or closes; it never hangs.
			b, err := io.ReadAll(conn)
			if err != nil && !errors.Is(err, io.EOF) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("proxy did not close the connection (read %q)", b)
				}
			}
		})
	}

	// After login: an oversized message length and a truncated message.
	t.Run("oversized message after login", func(t *testing.T) {
		nc := hijacked(t, p.DSN("app", "apppass", "appdb"))
		nc.Write([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(nc)
		if len(b) == 0 || b[0] != 'E' || !bytes.Contains(b, []byte("08P01")) {
			t.Fatalf("want a FATAL 08P01 ErrorResponse, got %q", b)
		}
	})
	var v int
	if err := good.QueryRow(ctx, "SELECT 5").Scan(&v); err != nil || v != 5 {
		t.Fatalf("good client broken: %v", err)
	}
}

func TestServerLostDuringTransaction(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	c := p.connect(t, ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	direct, err := pgx.Connect(ctx, pg.DSN("postgres", "postgres", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || (pe.Code != "08006" && pe.Code != "57P01") {
		t.Fatalf("want an error for the lost transaction, got %v", err)
	}
	tx.Rollback(ctx)
	// The client stays usable on a new server connection.
	var v int
	proxytest.Eventually(t, 5*time.Second, "client usable again", func() bool {
		return c.QueryRow(ctx, "SELECT 9").Scan(&v) == nil && v == 9
	})
}

func TestMaxDBConnections(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 5, DBExtra: "max_db_connections = 2\n"})
	ctx := context.Background()
	var conns []*pgx.Conn
	for i := 0; i < 3; i++ {
		conns = append(conns, p.connect(t, ctx))
	}
	for _, c := range conns[:2] {
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
	}
	// The third client waits: two server connections is the database's
	// maximum, although its pool could open five.
	done := make(chan error, 1)
	go func() {
		_, err := conns[2].Exec(ctx, "SELECT 1")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("ran over max_db_connections: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := conns[0].Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after a server connection was released")
	}
	conns[1].Exec(ctx, "COMMIT")
}
