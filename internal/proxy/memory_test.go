package proxy_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// sendBigQuery logs in through p and sends one simple Query of size bytes
// ("SELECT length('xxx...')"), written in pieces so the client itself
// holds no copy, then reads the answer and returns the length PostgreSQL
// counted.
func sendBigQuery(ctx context.Context, p *testProxy, size int) (string, error) {
	c, err := pgconn.Connect(ctx, p.DSN("app", "apppass", "appdb"))
	if err != nil {
		return "", err
	}
	defer c.Close(context.Background())
	nc := c.Conn()
	prefix, suffix := "SELECT length('", "')\x00"
	n := size - len(prefix) - len(suffix)
	var hdr [5]byte
	hdr[0] = 'Q'
	binary.BigEndian.PutUint32(hdr[1:], uint32(4+len(prefix)+n+len(suffix)))
	if _, err := nc.Write(append(hdr[:], prefix...)); err != nil {
		return "", err
	}
	chunk := []byte(strings.Repeat("x", 64<<10))
	for left := n; left > 0; {
		k := min(left, len(chunk))
		if _, err := nc.Write(chunk[:k]); err != nil {
			return "", err
		}
		left -= k
	}
	if _, err := io.WriteString(nc, suffix); err != nil {
		return "", err
	}
	fe := c.Frontend()
	var got string
	for {
		m, err := fe.Receive()
		if err != nil {
			return "", err
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			got = string(m.Values[0])
		case *pgproto3.ErrorResponse:
			return "", fmt.Errorf("%s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.ReadyForQuery:
			return got, nil
		}
	}
}

func TestBigQueriesAreStreamed(t *testing.T) {
	// Eight clients each send a 30 MB query at once through a pool of two:
	// most wait for a server while their query is on its way. The proxy
	// streams them, so its heap stays far below what they send (240 MB).
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak {
				peak = ms.HeapInuse
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	const clients, size = 8, 30 << 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := sendBigQuery(ctx, p, size)
			if err == nil && got != fmt.Sprint(size-len("SELECT length('")-len("')\x00")) {
				err = fmt.Errorf("PostgreSQL counted %s characters", got)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	growth := int64(peak) - int64(base.HeapInuse)
	t.Logf("heap in use: %d MB before, peak %d MB, while clients sent %d MB", base.HeapInuse>>20, peak>>20, clients*size>>20)
	// Loose bound: the clients' pgconn and the test itself allocate too;
	// buffering the queries would take 240 MB.
	if growth > 64<<20 {
		t.Fatalf("heap grew by %d MB while streaming %d MB of queries", growth>>20, clients*size>>20)
	}
}

func TestLargeMessageBudget(t *testing.T) {
	// A message the proxy must hold whole (a Parse) larger than what is
	// left of large_message_budget is refused with 53200, not buffered.
	p := startProxy(t, proxyOptions{Extra: "large_message_budget = 1048576"})
	ctx := context.Background()
	c := pgconnTo(t, p, "")
	_, err := c.Prepare(ctx, "big", "SELECT '"+strings.Repeat("y", 2<<20)+"'", nil)
	if sqlstate(err) != "53200" {
		t.Fatalf("want 53200 for a 2 MB Parse over a 1 MB budget, got %v", err)
	}
	// A smaller one fits.
	d := pgconnTo(t, p, "")
	if _, err := d.Prepare(ctx, "small", "SELECT '"+strings.Repeat("y", 512<<10)+"'", nil); err != nil {
		t.Fatalf("a 512 KB Parse within the budget: %v", err)
	}
}

func TestStreamedBindAndCopy(t *testing.T) {
	// Big parameters of a named (shared, renamed) statement and big COPY
	// rows go through streamed, intact.
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	c := pgconnTo(t, p, "")
	if _, err := c.Prepare(ctx, "len", "SELECT length($1::text), md5($1::text)", nil); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("abcdefgh", 2<<20) // 16 MB
	for i := 0; i < 2; i++ {
		res := c.ExecPrepared(ctx, "len", [][]byte{[]byte(big)}, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := string(res.Rows[0][0]); got != fmt.Sprint(len(big)) {
			t.Fatalf("length through the proxy: %s", got)
		}
	}
	if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS bigcopy; CREATE TABLE bigcopy (t text)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	rows := strings.Repeat(strings.Repeat("z", 300<<10)+"\n", 5)
	tag, err := c.CopyFrom(ctx, strings.NewReader(rows), "COPY bigcopy FROM STDIN")
	if err != nil || tag.RowsAffected() != 5 {
		t.Fatalf("COPY of 300 KB rows: %v %v", tag, err)
	}
	res := c.ExecParams(ctx, "SELECT sum(length(t)) FROM bigcopy", nil, nil, nil, nil).Read()
	if res.Err != nil || string(res.Rows[0][0]) != fmt.Sprint(5*(300<<10)) {
		t.Fatalf("rows copied: %v %q", res.Err, res.Rows)
	}
}
