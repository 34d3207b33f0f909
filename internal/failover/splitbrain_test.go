package failover_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
	"github.com/pauseproxy/pauseproxy/internal/failover"
	"github.com/pauseproxy/pauseproxy/internal/pgtest"
	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// clusterMember is c as a discovery member.
func clusterMember(name string, c *pgtest.Cluster) *discovery.Member {
	return &discovery.Member{Name: name, Host: "127.0.0.1", Port: c.Port, Role: "primary", LagBytes: -1}
}

// serverPort runs one transaction through c and returns the port of the
// server that ran it.
func serverPort(ctx context.Context, c *pgconn.PgConn) (string, error) {
	res := c.ExecParams(ctx, "SELECT current_setting('port')", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 {
		return "", fmt.Errorf("%d rows", len(res.Rows))
	}
	return string(res.Rows[0][0]), nil
}

// TestSplitBrainAfterChange: the source moves the primary from old to
// next, two real clusters that both accept writes. With on_split_brain =
// "hold" new transactions wait until only one node accepts writes (old is
// stopped), then run on next; with "follow" they go to next at once. Both
// report the split brain while it lasts.
func TestSplitBrainAfterChange(t *testing.T) {
	for _, action := range []string{config.SplitBrainHold, config.SplitBrainFollow} {
		t.Run(action, func(t *testing.T) {
			old := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
			next := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
			env := startEngine(t, "60s", nil, func(o *failover.Options) { o.OnSplitBrain = action })
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
			defer cancel()
			env.src.publish(clusterMember("old", old), nil)
			env.requireReleasedOn(t, clusterMember("old", old))
			c := env.connect(t)
			if port, err := serverPort(ctx, c); err != nil || port != fmt.Sprint(old.Port) {
				t.Fatalf("before the change: port %q, %v", port, err)
			}

			env.src.publish(clusterMember("next", next), nil)
			proxytest.Eventually(t, 10*time.Second, "split brain reported", func() bool {
				st := env.eng.Status()
				return st.SplitBrain && st.SplitBrainNode == clusterMember("old", old).Addr()
			})

			type result struct {
				port string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				port, err := serverPort(ctx, c)
				done <- result{port, err}
			}()
			if action == config.SplitBrainFollow {
				r := <-done
				if r.err != nil || r.port != fmt.Sprint(next.Port) {
					t.Fatalf("follow: %+v, want the transaction on the new primary", r)
				}
			} else {
				select {
				case r := <-done:
					t.Fatalf("hold: a transaction ran during the split brain: %+v", r)
				case <-time.After(time.Second):
				}
				if !held(env.db) || env.db.Target().Port != old.Port {
					t.Fatalf("hold: held %v, target %+v", held(env.db), env.db.Target())
				}
			}

			// The old primary goes away: one writable node is left.
			if err := old.Stop(); err != nil {
				t.Fatal(err)
			}
			proxytest.Eventually(t, 20*time.Second, "split brain over", func() bool {
				return !env.eng.Status().SplitBrain
			})
			if action == config.SplitBrainHold {
				r := <-done
				if r.err != nil || r.port != fmt.Sprint(next.Port) {
					t.Fatalf("hold: held transaction %+v, want it run on the new primary", r)
				}
			}
			env.requireReleasedOn(t, clusterMember("next", next))
		})
	}
}

// A client held through a split brain longer than hold_timeout is told
// why: 57P03 naming the split brain, not "no writable primary".
func TestSplitBrainHoldTimeoutSaysWhy(t *testing.T) {
	old := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
	next := pgtest.Require(t, pgtest.Options{AuthMethod: "md5"})
	env := startEngine(t, "2s", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env.src.publish(clusterMember("old", old), nil)
	env.requireReleasedOn(t, clusterMember("old", old))
	c := env.connect(t)
	env.src.publish(clusterMember("next", next), nil)
	proxytest.Eventually(t, 10*time.Second, "split brain reported", func() bool { return env.eng.Status().SplitBrain })
	_, err := serverPort(ctx, c)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" || !strings.Contains(pe.Message, "split brain") {
		t.Fatalf("want 57P03 naming the split brain, got %v", err)
	}
}
