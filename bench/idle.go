package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// IdleResult is the memory a pooler needs per connected, idle client.
type IdleResult struct {
	Target string `json:"target"`
	// Clients were asked for; Opened logged in and ran one query.
	Clients int `json:"clients"`
	Opened  int `json:"opened"`
	// RSSBefore and RSSAfter are the pooler's VmRSS before the clients
	// connected and with all of them connected and idle.
	RSSBefore int64 `json:"rss_before_bytes"`
	RSSAfter  int64 `json:"rss_after_bytes"`
	// KiBPerClient is (RSSAfter-RSSBefore)/Opened in KiB.
	KiBPerClient float64 `json:"kib_per_client"`
	// OpenSeconds is how long opening them took (at idleParallel at once).
	OpenSeconds float64 `json:"open_seconds"`
	Status      string  `json:"status"` // ok, failed, not run
	Error       string  `json:"error,omitempty"`
}

// idleParallel is how many clients connect at once. PgBouncer's default
// listen_backlog is 128; staying below it keeps the test about memory,
// not about the accept queue.
const idleParallel = 32

// idleSettle is how long the clients sit idle before RSS is read, so that
// per-connection goroutines and buffers have settled.
const idleSettle = 3 * time.Second

// runIdle connects n clients to t, each logs in and runs SELECT 1 (a
// client that has never sent a query is not what an application pool
// holds), then reads the pooler's RSS with all of them idle, and closes
// them.
func runIdle(ctx context.Context, t *Target, n int) IdleResult {
	res := IdleResult{Target: t.Name, Clients: n, Status: "failed"}
	before, err := rssBytes(t.Proc.PID())
	if err != nil {
		res.Error = fmt.Sprintf("read RSS: %v", err)
		return res
	}
	res.RSSBefore = before

	start := time.Now()
	conns, err := openIdle(ctx, t.Port, n)
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened = len(conns)
	defer closeAll(conns)
	if err != nil {
		res.Error = fmt.Sprintf("after %d clients: %v", len(conns), err)
		return res
	}
	select {
	case <-ctx.Done():
		res.Error = ctx.Err().Error()
		return res
	case <-time.After(idleSettle):
	}
	if t.Proc.exited() {
		res.Error = t.Name + " exited:\n" + t.Proc.logTail()
		return res
	}
	after, err := rssBytes(t.Proc.PID())
	if err != nil {
		res.Error = fmt.Sprintf("read RSS: %v", err)
		return res
	}
	res.RSSAfter = after
	res.KiBPerClient = float64(after-before) / float64(len(conns)) / 1024
	res.Status = "ok"
	return res
}

// openIdle opens n connections through port, idleParallel at a time, and
// returns those that succeeded, with the first error.
func openIdle(ctx context.Context, port, n int) ([]*pgconn.PgConn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		conns    []*pgconn.PgConn
		firstErr error
	)
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range idleParallel {
		wg.Go(func() {
			for range next {
				c, err := openOne(ctx, port)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for range n {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil && len(conns) < n {
		firstErr = ctx.Err()
	}
	return conns, firstErr
}

func openOne(ctx context.Context, port int) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, benchDSN(port))
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		c.Close(context.Background())
		return nil, err
	}
	return c, nil
}

// closeAll closes the connections, idleParallel at a time.
func closeAll(conns []*pgconn.PgConn) {
	ch := make(chan *pgconn.PgConn)
	var wg sync.WaitGroup
	for range idleParallel {
		wg.Go(func() {
			for c := range ch {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.Close(ctx)
				cancel()
			}
		})
	}
	for _, c := range conns {
		ch <- c
	}
	close(ch)
	wg.Wait()
}
