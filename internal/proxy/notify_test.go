package proxy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notifyConn opens a pgconn through p whose notifications arrive on the
// returned channel.
func notifyConn(t *testing.T, p *testProxy) (*pgconn.PgConn, chan *pgconn.Notification) {
	t.Helper()
	ch := make(chan *pgconn.Notification, 10000)
	cfg, err := pgconn.ParseConfig(p.DSN("app", "apppass", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { ch <- n }
	c, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, ch
}

// waitNotification waits (generously) for c's next notification.
func waitNotification(t *testing.T, c *pgconn.PgConn, ch chan *pgconn.Notification) *pgconn.Notification {
	t.Helper()
	select {
	case n := <-ch:
		return n
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitForNotification(ctx); err != nil {
		t.Fatalf("waiting for a notification: %v", err)
	}
	return <-ch
}

// noNotification checks that c has received no notification: a round trip
// lets anything already on its way arrive first.
func noNotification(t *testing.T, c *pgconn.PgConn, ch chan *pgconn.Notification) {
	t.Helper()
	if _, err := c.Exec(context.Background(), "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-ch:
		t.Fatalf("unexpected notification %+v", n)
	default:
	}
}

func TestListenInTransactionMode(t *testing.T) {
	// One server connection: without the listener, whoever ran on it
	// after the LISTEN would get the notifications.
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx := context.Background()
	other, otherCh := notifyConn(t, p)
	a, aCh := notifyConn(t, p)

	if _, err := a.Exec(ctx, "LISTEN jobs").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "NOTIFY jobs, 'one'").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if n := waitNotification(t, a, aCh); n.Channel != "jobs" || n.Payload != "one" {
		t.Fatalf("got %+v", n)
	}
	// The notifier, which ran on the server connection after the LISTEN,
	// gets nothing.
	noNotification(t, other, otherCh)

	// A LISTEN rolled back never happened; one committed does.
	if _, err := a.Exec(ctx, "BEGIN; LISTEN rolled; ROLLBACK").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "BEGIN; LISTEN committed; COMMIT").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "NOTIFY rolled, 'no'; NOTIFY committed, 'yes'").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if n := waitNotification(t, a, aCh); n.Channel != "committed" || n.Payload != "yes" {
		t.Fatalf("after ROLLBACK and COMMIT of LISTEN: got %+v", n)
	}
	// Extended protocol, UNLISTEN, and a notification arriving while the
	// client is inside a transaction comes after it.
	if err := a.ExecParams(ctx, "UNLISTEN committed", nil, nil, nil, nil).Read().Err; err != nil {
		t.Fatal(err)
	}
	if err := a.ExecParams(ctx, "LISTEN ext", nil, nil, nil, nil).Read().Err; err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "NOTIFY committed, 'gone'; NOTIFY ext, 'e1'").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if n := waitNotification(t, a, aCh); n.Channel != "ext" || n.Payload != "e1" {
		t.Fatalf("after UNLISTEN committed and LISTEN ext: got %+v", n)
	}
	if _, err := a.Exec(ctx, "UNLISTEN *").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, "NOTIFY jobs, 'x'; NOTIFY ext, 'y'").ReadAll(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	noNotification(t, a, aCh)
}

func TestListenManyClientsInOrder(t *testing.T) {
	// 100 listeners on 5 channels, 5 notifiers sending 20 notifications
	// each, through a pool of 3 under pgbench load: every listener gets
	// exactly its channel's notifications, in order, payloads intact.
	p := startProxy(t, proxyOptions{PoolSize: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pgbench(t, p, "-i", "-q", "-s", "1")
	const listeners, channels, per = 100, 5, 20
	type conn struct {
		c  *pgx.Conn
		ch string
	}
	var ls []conn
	for i := 0; i < listeners; i++ {
		c, err := pgx.Connect(ctx, p.DSN("app", "apppass", "appdb"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		ch := fmt.Sprintf("chan_%d", i%channels)
		if _, err := c.Exec(ctx, "LISTEN "+ch); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, conn{c, ch})
	}
	load := make(chan string, 1)
	go func() {
		cmd := exec.CommandContext(ctx, "pgbench", "-S", "-n", "-c", "4", "-j", "2", "-t", "300", p.KV("app", "appdb"))
		cmd.Env = append(os.Environ(), "PGPASSWORD=apppass")
		out, _ := cmd.CombinedOutput()
		load <- string(out)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, channels+listeners)
	for k := 0; k < channels; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c, err := pgx.Connect(ctx, p.DSN("app", "apppass", "appdb"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for i := 0; i < per; i++ {
				if _, err := c.Exec(ctx, "SELECT pg_notify($1, $2)", fmt.Sprintf("chan_%d", k), fmt.Sprintf("%d:%d", k, i)); err != nil {
					errs <- err
					return
				}
			}
		}(k)
	}
	for _, l := range ls {
		wg.Add(1)
		go func(l conn) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				n, err := l.c.WaitForNotification(ctx)
				if err != nil {
					errs <- fmt.Errorf("%s: notification %d: %w", l.ch, i, err)
					return
				}
				want := fmt.Sprintf("%s:%d", l.ch[len("chan_"):], i)
				if n.Channel != l.ch || n.Payload != want {
					errs <- fmt.Errorf("listener on %s got %s %q, want %q", l.ch, n.Channel, n.Payload, want)
					return
				}
			}
		}(l)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if out := <-load; !strings.Contains(out, "number of failed transactions: 0") {
		t.Fatalf("pgbench beside the notifications:\n%s", out)
	}
}

func TestListenWithPsql(t *testing.T) {
	// psql prints the notifications its LISTEN brought after its next
	// statement, as it does against PostgreSQL. The pool of one makes the
	// first NOTIFY run right after pg_sleep(2); the last statement lasts
	// two seconds so the notification, which PostgreSQL signals to the
	// listener's backend asynchronously, is in before psql's last answer
	// (as it must be against PostgreSQL too).
	p := startProxy(t, proxyOptions{PoolSize: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	psqlOut := make(chan string, 1)
	go func() {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-v", "ON_ERROR_STOP=1",
			"-c", "LISTEN from_psql", "-c", "SELECT pg_sleep(2)", "-c", "SELECT pg_sleep(2)", p.KV("app", "appdb"))
		cmd.Env = append(os.Environ(), "PGPASSWORD=apppass")
		out, err := cmd.CombinedOutput()
		psqlOut <- fmt.Sprintf("%s(exit: %v, args %q)", out, err, cmd.Args)
	}()
	notifier := pgconnTo(t, p, "")
	for {
		if _, err := notifier.Exec(ctx, "NOTIFY from_psql, 'hello psql'").ReadAll(); err != nil {
			t.Fatal(err)
		}
		select {
		case out := <-psqlOut:
			if !strings.Contains(out, `Asynchronous notification "from_psql" with payload "hello psql" received`) {
				t.Fatalf("psql did not show the notification:\n%s", out)
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("psql never finished")
		}
	}
}

func TestListenerReconnects(t *testing.T) {
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx := context.Background()
	a, aCh := notifyConn(t, p)
	if _, err := a.Exec(ctx, "LISTEN survive").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// Kill the listener's backend (it last ran the proxy's quoted LISTEN).
	dc, err := pgconn.Connect(ctx, pg.DSN("postgres", "postgres", "appdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close(ctx)
	rs, err := dc.Exec(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN "survive"%'`).ReadAll()
	if err != nil || string(rs[0].Rows[0][0]) != "1" {
		t.Fatalf("terminate the listener: %v %v", err, rs)
	}
	// Notifications sent after it is back arrive; the client stays.
	other := pgconnTo(t, p, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := other.Exec(ctx, "NOTIFY survive, 'after'").ReadAll(); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		a.WaitForNotification(wctx)
		cancel()
		select {
		case n := <-aCh:
			if n.Payload != "after" {
				t.Fatalf("got %+v", n)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no notification after the listener's connection was lost")
		}
	}
}

func TestNotificationsOfAClientThatDoesNotRead(t *testing.T) {
	// A client that LISTENs and never reads is cut off when its queue of
	// undelivered notifications passes the limit; the others go on.
	p := startProxy(t, proxyOptions{PoolSize: 2})
	ctx := context.Background()
	lazy := pgconnTo(t, p, "")
	if _, err := lazy.Exec(ctx, "LISTEN flood").ReadAll(); err != nil {
		t.Fatal(err)
	}
	if tc, ok := lazy.Conn().(interface{ SetReadBuffer(int) error }); ok {
		tc.SetReadBuffer(4096)
	}
	good, goodCh := notifyConn(t, p)
	if _, err := good.Exec(ctx, "LISTEN flood").ReadAll(); err != nil {
		t.Fatal(err)
	}
	sender := pgconnTo(t, p, "")
	payload := strings.Repeat("x", 7000)
	const flood = 2500 // 17 MB: more than the limit and any socket buffers
	// good reads as they come, on its own goroutine.
	gotAll := make(chan int, 1)
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer rcancel()
	go func() {
		n := 0
		for n < flood && rctx.Err() == nil {
			good.WaitForNotification(rctx)
			for len(goodCh) > 0 {
				<-goodCh
				n++
			}
		}
		gotAll <- n
	}()
	for i := 0; i < flood; i++ {
		if _, err := sender.Exec(ctx, "NOTIFY flood, '"+payload+"'").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
	// lazy was disconnected: once it reads what was sent before, its
	// connection is at its end.
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	_, err := lazy.Exec(qctx, "SELECT 1").ReadAll()
	expired := qctx.Err() == context.DeadlineExceeded
	cancel()
	if err == nil {
		t.Fatal("the client that does not read was never disconnected")
	}
	if expired {
		t.Fatalf("the client that does not read: no end of its connection (%v)", err)
	}
	// good got every one.
	if n := <-gotAll; n != flood {
		t.Fatalf("the reading client got %d of %d notifications", n, flood)
	}
}
