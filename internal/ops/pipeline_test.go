package ops

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Undos run newest first, skip disarmed ones, and run under their own
// context after the pipeline's has ended.
func TestPipelineUndo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p := newPipeline("test", nil)
	var order []string
	p.onUndo("first", func(ctx context.Context) error {
		if ctx.Err() != nil {
			t.Error("undo ran with a dead context")
		}
		order = append(order, "first")
		return nil
	})
	if err := p.step(ctx, "one", func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	u := p.onUndo("disarmed", func(context.Context) error { order = append(order, "disarmed"); return nil })
	u.disarm()
	p.onUndo("second", func(context.Context) error { order = append(order, "second"); return errors.New("boom") })
	err := p.step(ctx, "slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	var se *StepError
	if !errors.As(err, &se) || se.Step != "slow" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if err := p.step(ctx, "never", func(context.Context) error { t.Error("ran after the deadline"); return nil }); err == nil {
		t.Fatal("a step started after the deadline")
	}
	uerr := p.unwind()
	if strings.Join(order, ",") != "second,first" || uerr == nil || !strings.Contains(uerr.Error(), "undo second: boom") {
		t.Fatalf("order %v, err %v", order, uerr)
	}
	if p.unwind() != nil || len(order) != 2 {
		t.Fatal("undos ran twice")
	}
	if got := stepsText(p.steps); !strings.HasPrefix(got, "one 0s, slow ") || !strings.Contains(got, "(failed)") {
		t.Fatalf("steps %q", got)
	}
}
