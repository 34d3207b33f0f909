package failover

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// Split brain: after the primary changed, the previous primary may still
// accept writes (a network partition that Patroni's leader lock resolved
// on one side only, a node fenced too late, a source that is wrong). Each
// change of primary, whatever the source, checks the previous one with the
// same test as any candidate (pg_is_in_recovery() = false). While it still
// accepts writes the engine logs an error, Status.SplitBrain is set
// (pauseproxy_split_brain), and per on_split_brain:
//
//   - "hold" (the default): the cycle does not release. New transactions
//     wait, each bounded by hold_timeout, until only one node accepts
//     writes (the previous one is demoted, stopped or unreachable), then
//     go to the new primary.
//   - "follow": the cycle releases to the new primary, as it did before
//     the check existed, and the previous one is checked again every
//     splitBrainRecheck until it no longer accepts writes.
//
// A static source with several hosts already refuses to name a primary
// when two accept writes (discovery.ErrSplitBrain): that always holds,
// since there is no new primary to follow, and sets the gauge too.

// splitBrainRecheck is how often a previous primary that still accepted
// writes is checked again after a release (on_split_brain = "follow").
const splitBrainRecheck = time.Second

// splitBrainAction is the on_split_brain in force.
func (e *Engine) splitBrainAction() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.onSplitBrain
}

// splitBrainOld is the previous primary still accepting writes, or nil.
func (e *Engine) splitBrainOld() *discovery.Member {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.splitOld
}

// SetOnSplitBrain changes the on_split_brain action (a reload).
func (e *Engine) SetOnSplitBrain(action string) {
	if action == "" {
		action = config.SplitBrainHold
	}
	e.mu.Lock()
	e.onSplitBrain = action
	e.mu.Unlock()
}

// splitBrainHolds checks, before releasing to candidate p, whether the
// previous primary still accepts writes. It reports whether the release
// must wait (on_split_brain = "hold").
func (e *Engine) splitBrainHolds(ctx context.Context, p *discovery.Member) bool {
	e.mu.Lock()
	prev := e.previous
	e.mu.Unlock()
	if prev == nil || prev.Addr() == p.Addr() || e.opts.ReadOnly {
		e.noteSplitBrain(nil, p)
		return false
	}
	if !e.stillWritable(ctx, prev, p) {
		e.noteSplitBrain(nil, p)
		return false
	}
	e.noteSplitBrain(prev, p)
	hold := e.splitBrainAction() != config.SplitBrainFollow
	if hold {
		e.db.SetHoldNote(fmt.Sprintf("split brain: the previous primary %s still accepts writes (on_split_brain = hold)", prev.Addr()))
	}
	return hold
}

// recheckSplitBrain runs after a release that followed the new primary
// while the previous one still accepted writes: it clears the state once
// the previous one no longer does.
func (e *Engine) recheckSplitBrain(ctx context.Context) {
	e.mu.Lock()
	old, cur := e.splitOld, e.previous
	e.mu.Unlock()
	if old == nil {
		return
	}
	if !e.stillWritable(ctx, old, cur) {
		e.noteSplitBrain(nil, cur)
	}
}

// stillWritable reports whether m, the previous primary, accepts writes
// as a server other than cur. A node that cannot be reached, or that
// refuses the login, does not accept ours: only one that answers
// pg_is_in_recovery() = false counts. Another address of the same server
// (its Unix socket, a DNS alias: same postmaster start time) is not a
// second primary.
func (e *Engine) stillWritable(ctx context.Context, m, cur *discovery.Member) bool {
	vctx, cancel := context.WithTimeout(ctx, e.opts.VerifyTimeout)
	defer cancel()
	old, err := e.db.ProbeNode(vctx, m.Host, m.Port)
	if err != nil || !old.Writable {
		return false
	}
	if cur == nil {
		return true
	}
	now, err := e.db.ProbeNode(vctx, cur.Host, cur.Port)
	return err != nil || now.Started != old.Started
}

// noteSplitBrain records whether old (nil: none) still accepts writes
// while cur is the primary, logging each start and end once.
func (e *Engine) noteSplitBrain(old, cur *discovery.Member) {
	e.mu.Lock()
	was := e.splitOld
	e.splitOld = old
	action := e.onSplitBrain
	e.mu.Unlock()
	switch {
	case old != nil && (was == nil || was.Addr() != old.Addr()):
		what := "new transactions wait (on_split_brain = hold, bounded by hold_timeout) until only one node accepts writes"
		if action == config.SplitBrainFollow {
			what = "following the new primary anyway (on_split_brain = follow); writes may go to both sides"
		}
		e.log.Error("split brain: the previous primary still accepts writes", slog.String("previous", old.Addr()),
			slog.String("primary", addrOf(cur)), slog.String("action", what))
	case old == nil && was != nil:
		e.log.Info("split brain over: the previous primary no longer accepts writes", slog.String("previous", was.Addr()),
			slog.String("primary", addrOf(cur)))
	}
}

func addrOf(m *discovery.Member) string {
	if m == nil {
		return ""
	}
	return m.Addr()
}
