package ops

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Holding traffic within hold_timeout: from the PAUSE on, new
// transactions wait on every proxy, and each one that waits longer than
// the proxy's hold_timeout gets 57P03. A command that held traffic longer
// (a drain, then a switchover or a maintenance command) would fail the
// very clients it holds to protect. So the held phase (PAUSE to RESUME)
// is bounded by hold_timeout minus resumeMargin: the command resumes
// traffic by itself before the first held client can time out, and fails
// saying why. The drain is shortened to leave the action at least
// minHeldAction; when hold_timeout is too short even for that, the
// command refuses to start. The local configuration's hold_timeout is
// taken for every proxy: give the fleet the same value.

// resumeMargin is the time left between the end of the held phase and
// hold_timeout, for RESUME to reach every proxy.
const resumeMargin = 3 * time.Second

// minHeldAction is the least time the action itself (Patroni's switchover
// and the proxies' check of the new primary, or the maintenance command)
// is given inside the held phase. A switchover on a local Patroni cluster
// leaves no writable primary for about 3 s (docs/operations.md).
const minHeldAction = 10 * time.Second

// fitHold sets o.heldBudget from hold_timeout and shortens o.DrainTimeout
// to fit in it, or refuses, saying why.
func (o *Options) fitHold(what string) error {
	hold := o.Config.Proxy.HoldTimeout
	budget := hold - resumeMargin
	if budget-minHeldAction < time.Second {
		return fmt.Errorf("%s would hold traffic longer than hold_timeout (%s) allows: the held phase needs at least %s (a drain of 1s, %s for the %s, %s for RESUME) and a client held longer than hold_timeout gets 57P03; raise hold_timeout on every proxy",
			what, hold, time.Second+minHeldAction+resumeMargin, minHeldAction, what, resumeMargin)
	}
	if most := budget - minHeldAction; o.DrainTimeout > most {
		o.Log.Info("drain shortened to fit in hold_timeout: held clients must not time out before the command resumes them",
			slog.Duration("drain_timeout", o.DrainTimeout), slog.Duration("drain", most), slog.Duration("hold_timeout", hold))
		o.DrainTimeout = most
	}
	o.heldBudget = budget
	return nil
}

// heldContext bounds the held phase that starts now by o.heldBudget (see
// fitHold); its cause says why when that bound is what ended it.
func (o *Options) heldContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.heldBudget <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, time.Now().Add(o.heldBudget), &heldBudgetError{o.heldBudget, o.Config.Proxy.HoldTimeout})
}

// heldBudgetError is the held phase reaching its bound.
type heldBudgetError struct{ budget, hold time.Duration }

func (e *heldBudgetError) Error() string {
	return fmt.Sprintf("traffic held for %s, the most hold_timeout (%s) allows; resumed before held clients time out (raise hold_timeout on every proxy for a longer action)", e.budget, e.hold)
}

// explainHeld adds the reason to err when the held phase's bound ended
// it.
func explainHeld(hctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cause, ok := context.Cause(hctx).(*heldBudgetError); ok {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}
