package ops

import (
	"context"
	"errors"
	"time"
)

// The helpers of `pauseproxy ctl`: the pipelines' pause and resume on their
// own, for runbooks and callback scripts.

// PauseAll pauses db ("" every database) on every proxy at once, all or
// nothing: if one cannot pause, every proxy is resumed and the error names
// the ones that failed. expire (0: none) makes each pause end by itself.
func PauseAll(ctx context.Context, proxies []Proxy, db string, timeout, expire time.Duration) error {
	f := fleet(proxies)
	err := f.pause(ctx, db, timeout, expire)
	if err == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	if rerr := f.resume(rctx, db); rerr != nil {
		return errors.Join(err, errors.New("and resuming failed too (the pauses' expiry, if any, resumes them)"), rerr)
	}
	return errors.Join(err, errors.New("every proxy was resumed"))
}

// ResumeAll resumes db ("" everything) on every proxy, trying each even
// when others fail.
func ResumeAll(ctx context.Context, proxies []Proxy, db string) error {
	return fleet(proxies).resume(ctx, db)
}
