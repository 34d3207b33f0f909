package ops

import (
	"context"
	"log/slog"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
)

// The steps that switchover and exec share.

// lockStep takes the one-at-a-time lock of scope (Consul or a file, see
// acquireLock); the pipeline's undo releases it.
func lockStep(ctx context.Context, p *pipeline, dc *config.Database, scope string) error {
	return p.step(ctx, "lock", func(ctx context.Context) error {
		release, where, err := acquireLock(dc, scope, p.log)
		if err != nil {
			return err
		}
		p.onUndo("unlock", func(context.Context) error { return release() })
		p.log.Info("lock: held", slog.String("lock", where))
		return nil
	})
}

// pauseStep pauses db on every proxy. The resume undo is registered first,
// so that whatever fails from here on (a PAUSE that only half succeeded
// included) resumes every proxy; resumeStep disarms it.
func pauseStep(ctx context.Context, p *pipeline, f fleet, db string, drain time.Duration) (*undo, error) {
	resume := p.onUndo("resume", func(ctx context.Context) error { return f.resume(ctx, db) })
	return resume, p.step(ctx, "pause", func(ctx context.Context) error {
		return f.pause(ctx, db, drain, expiry(ctx))
	})
}

// resumeStep resumes db on every proxy, the normal way.
func resumeStep(ctx context.Context, p *pipeline, f fleet, db string, resume *undo) error {
	return p.step(ctx, "resume", func(ctx context.Context) error {
		resume.disarm()
		return f.resume(ctx, db)
	})
}
