package ops

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// undoTimeout bounds each undo. Undos run under a context of their own,
// not the pipeline's, which may have timed out already.
const undoTimeout = 15 * time.Second

// StepResult is one step that ran.
type StepResult struct {
	Name string
	Took time.Duration
	Err  error // nil when the step succeeded
}

// StepError is a pipeline that failed, naming the step.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// pipeline runs named steps in order and keeps the undos registered so
// far. Not safe for concurrent use: one goroutine drives it.
type pipeline struct {
	what  string // "switchover app", for the log
	log   *slog.Logger
	steps []StepResult
	undos []*undo
}

// undo is a registered undo; disarm it once its step's effect was reversed
// the normal way (a resume step).
type undo struct {
	name  string
	fn    func(context.Context) error
	armed bool
}

func (u *undo) disarm() { u.armed = false }

func newPipeline(what string, log *slog.Logger) *pipeline {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &pipeline{what: what, log: log.With(slog.String("op", what))}
}

// step runs fn as the step called name and records it. A failure comes
// back as a *StepError.
func (p *pipeline) step(ctx context.Context, name string, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		p.steps = append(p.steps, StepResult{Name: name, Err: err})
		return &StepError{Step: name, Err: fmt.Errorf("not started: %w", err)}
	}
	p.log.Info(name + ": start")
	start := time.Now()
	err := fn(ctx)
	took := time.Since(start)
	p.steps = append(p.steps, StepResult{Name: name, Took: took, Err: err})
	if err != nil {
		p.log.Error(name+": failed", slog.Duration("took", took.Round(time.Millisecond)), slog.Any("err", err))
		return &StepError{Step: name, Err: err}
	}
	p.log.Info(name+": done", slog.Duration("took", took.Round(time.Millisecond)))
	return nil
}

// onUndo registers fn to run at the end unless disarmed: at the latest when
// the pipeline finishes, whether it failed or not. Register it before the
// step whose effect it reverses, so that a step that half-succeeds is
// undone too.
func (p *pipeline) onUndo(name string, fn func(context.Context) error) *undo {
	u := &undo{name: name, fn: fn, armed: true}
	p.undos = append(p.undos, u)
	return u
}

// unwind runs the armed undos, newest first, each under its own context.
// It returns their errors joined.
func (p *pipeline) unwind() error {
	var errs []string
	for i := len(p.undos) - 1; i >= 0; i-- {
		u := p.undos[i]
		if !u.armed {
			continue
		}
		u.armed = false
		ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
		start := time.Now()
		err := u.fn(ctx)
		cancel()
		if err != nil {
			p.log.Error("undo "+u.name+": failed", slog.Duration("took", time.Since(start).Round(time.Millisecond)), slog.Any("err", err))
			errs = append(errs, fmt.Sprintf("undo %s: %v", u.name, err))
			continue
		}
		p.log.Info("undo "+u.name+": done", slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// stepsText is "proxies 3ms, lock 1ms, ...".
func stepsText(steps []StepResult) string {
	parts := make([]string, 0, len(steps))
	for _, s := range steps {
		t := fmt.Sprintf("%s %s", s.Name, roundDur(s.Took))
		if s.Err != nil {
			t += " (failed)"
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, ", ")
}

// roundDur rounds for people: milliseconds under 10s.
func roundDur(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
