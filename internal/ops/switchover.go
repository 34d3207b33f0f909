package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/discovery"
)

// Defaults of a switchover.
const (
	DefaultSwitchoverTimeout = 60 * time.Second
	// DefaultMaxLag is the most replication lag, in bytes, a replica may
	// have to be switched over to: 1 MiB, a few milliseconds of a busy
	// primary's WAL, so that Patroni's own shutdown-and-catch-up is short.
	DefaultMaxLag = 1 << 20
)

// SwitchoverOptions configure Switchover.
type SwitchoverOptions struct {
	Options
	// Candidate is the member to hand the primary to; "" lets Patroni
	// choose among the eligible replicas.
	Candidate string
	// MaxLag is the most replication lag in bytes the candidate (or at
	// least one replica) may have; 0 means DefaultMaxLag.
	MaxLag int64
}

// Switchover moves the database's primary to another member with its
// traffic held on every proxy, as the package doc describes. On failure
// every proxy is resumed and the error (a *StepError) names the step; the
// report says what ran either way.
func Switchover(ctx context.Context, o SwitchoverOptions) (*Report, error) {
	dc, err := o.prepare(ctx, "switchover", DefaultSwitchoverTimeout)
	if err != nil {
		return nil, err
	}
	if o.MaxLag <= 0 {
		o.MaxLag = DefaultMaxLag
	}
	f := fleet(o.Proxies)
	defer f.close()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := newPipeline("switchover "+o.Database, o.Log)
	rep := &Report{Database: o.Database, Proxies: f.names()}
	// bg counts the goroutine that waits for Patroni's answer: the undos
	// must not wait for it, the return must.
	var bg sync.WaitGroup
	err = o.run(ctx, p, f, dc, rep, &bg)
	if uerr := p.unwind(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	cancel()
	bg.Wait()
	rep.Steps = p.steps
	if err == nil {
		o.Log.Info("switchover done", slog.String("database", o.Database), slog.String("from", rep.From),
			slog.String("to", rep.To), slog.Duration("held", rep.Held.Round(time.Millisecond)))
	}
	return rep, err
}

// answer is Patroni's answer to POST /switchover, filled in by the goroutine
// that waits for it; done is closed then.
type answer struct {
	done chan struct{}
	text string
	err  error
}

// failed returns Patroni's refusal once it has answered with one.
func (a *answer) failed() error {
	select {
	case <-a.done:
		if a.err != nil {
			return fmt.Errorf("Patroni refused or failed the switchover: %w", a.err)
		}
	default:
	}
	return nil
}

func (o *SwitchoverOptions) run(ctx context.Context, p *pipeline, f fleet, dc *config.Database, rep *Report, bg *sync.WaitGroup) error {
	db := o.Database
	var (
		patroni *patroniClient
		apis    []string
	)
	if err := p.step(ctx, "discover", func(ctx context.Context) error {
		var err error
		if patroni, err = newPatroniClient(dc); err != nil {
			return err
		}
		apis, err = discoverAPIs(ctx, dc, patroni.configured)
		return err
	}); err != nil {
		return err
	}

	if err := lockStep(ctx, p, dc, lockScope(ctx, dc, apis)); err != nil {
		return err
	}

	if err := p.step(ctx, "proxies", func(ctx context.Context) error {
		_, err := checkProxies(ctx, f, db, true)
		return err
	}); err != nil {
		return err
	}

	var (
		plan      *switchoverPlan
		leaderAPI string                // the leader's REST API base URL
		names     = map[string]string{} // address -> member name
	)
	if err := p.step(ctx, "check", func(ctx context.Context) error {
		st, err := patroni.cluster(ctx, apis)
		if err != nil {
			return err
		}
		if plan, err = checkCluster(st, o.Candidate, o.MaxLag); err != nil {
			return err
		}
		if leaderAPI = discovery.BaseURL(plan.leader.APIURL); leaderAPI == "" {
			leaderAPI = apis[0]
		}
		// Credentials that Patroni would refuse are found now, before
		// any traffic is held.
		if err := patroni.checkAccess(ctx, leaderAPI); err != nil {
			return err
		}
		for _, m := range st.Members {
			names[m.addr()] = m.Name
		}
		// Every proxy must serve the leader now, or the wait below would
		// wait for the wrong change.
		states, err := f.states(ctx, db)
		if err != nil {
			return err
		}
		var errs []error
		for i, s := range states {
			if s.Verified != plan.leader.addr() {
				errs = append(errs, fmt.Errorf("%s serves %s from %s, but Patroni's leader %s is at %s: its discovery is behind; try again",
					f[i].Name(), db, orNone(s.Verified), plan.leader.Name, plan.leader.addr()))
			}
		}
		o.Log.Info("check: cluster can switch over", slog.String("leader", plan.leader.Name),
			slog.String("candidate", orNone(o.Candidate)), slog.String("eligible", strings.Join(plan.eligible, ",")))
		return errors.Join(errs...)
	}); err != nil {
		return err
	}
	old := plan.leader.addr()
	rep.From = fmt.Sprintf("%s (%s)", plan.leader.Name, old)

	// From here traffic is held: the undo resumes every proxy, whatever
	// fails, even a PAUSE that only half succeeded. The held phase is
	// bounded so that no held client reaches hold_timeout
	// (holdbudget.go).
	heldSince := time.Now()
	hctx, hcancel := o.heldContext(ctx)
	defer hcancel()
	err := o.runHeld(hctx, p, f, db, rep, heldSince, patroni, plan, leaderAPI, names, bg)
	return explainHeld(hctx, err)
}

// runHeld is the held phase of a switchover: pause, POST /switchover, wait
// for every proxy to verify the new primary, resume.
func (o *SwitchoverOptions) runHeld(ctx context.Context, p *pipeline, f fleet, db string, rep *Report, heldSince time.Time,
	patroni *patroniClient, plan *switchoverPlan, leaderAPI string, names map[string]string, bg *sync.WaitGroup) error {
	old := plan.leader.addr()
	resume, err := pauseStep(ctx, p, f, db, o.DrainTimeout)
	if err != nil {
		return err
	}

	// Patroni answers POST /switchover only on its own one-second poll
	// after the leader key moved (api.py, poll_failover_result): the
	// answer is awaited in the background, and the proxies are watched
	// meanwhile. A refusal ends the wait at once.
	ans := &answer{done: make(chan struct{})}
	if err := p.step(ctx, "switchover", func(ctx context.Context) error {
		bg.Go(func() {
			defer close(ans.done)
			ans.text, ans.err = patroni.switchover(ctx, leaderAPI, plan.leader.Name, o.Candidate)
		})
		// The step ends when no proxy serves the old primary any more:
		// Patroni has begun the demotion.
		_, err := f.waitAll(ctx, db, func(s State) bool { return s.Verified != old }, ans.failed)
		return err
	}); err != nil {
		return err
	}

	var verified []string
	if err := p.step(ctx, "wait", func(ctx context.Context) error {
		var err error
		verified, err = f.waitAll(ctx, db, func(s State) bool { return s.Verified != "" && s.Verified != old }, ans.failed)
		return err
	}); err != nil {
		return err
	}
	to := verified[0]
	for i, v := range verified {
		if v != to {
			o.Log.Warn("proxies verified different primaries", slog.String("first", to), slog.String(f[i].Name(), v))
		}
	}
	rep.To = fmt.Sprintf("%s (%s)", orNone(names[to]), to)

	if err := resumeStep(ctx, p, f, db, resume); err != nil {
		return err
	}
	rep.Held = time.Since(heldSince)

	// Traffic flows again; Patroni's answer is only reported.
	select {
	case <-ans.done:
	case <-ctx.Done():
	}
	select {
	case <-ans.done:
		if ans.err != nil {
			rep.PatroniAnswer = ans.err.Error()
			o.Log.Warn("Patroni's answer to the switchover was not a success, yet every proxy verified the new primary", slog.Any("answer", ans.err))
		} else {
			rep.PatroniAnswer = ans.text
		}
	default:
		rep.PatroniAnswer = "(no answer yet)"
	}
	return nil
}

// Summary is one line for people: what moved, how long traffic was held,
// and each step's duration.
func (r *Report) Summary() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", r.Database)
	switch {
	case r.To != "":
		fmt.Fprintf(&b, " primary %s -> %s;", orNone(r.From), r.To)
	case r.From != "":
		fmt.Fprintf(&b, " primary %s;", r.From)
	}
	if r.Held > 0 {
		fmt.Fprintf(&b, " traffic held %s on %d proxies;", roundDur(r.Held), len(r.Proxies))
	}
	fmt.Fprintf(&b, " steps: %s", stepsText(r.Steps))
	return b.String()
}
