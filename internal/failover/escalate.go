package failover

import (
	"context"
	"log/slog"
	"time"
)

// A database held without a usable primary (none named, or the one named
// not writable yet) is logged every few seconds while it lasts, at a level
// that rises with how long it has lasted, so that an operator's alerting
// on WARN and ERROR lines notices a hold that is no longer a normal role
// change:
//
//   - INFO while it is shorter than Options.WarnAfter (default 10s): a
//     switchover or a restart takes a few seconds (about 2.7 s for
//     Patroni's on a small cluster);
//   - WARN after that;
//   - ERROR once it is longer than hold_timeout: the clients held since the
//     start are now getting 57P03 instead of their transaction.
//
// Each line carries how long the database has been held.

// Defaults of Options.WarnAfter and Options.NoPrimaryLogInterval.
const (
	defaultWarnAfter         = 10 * time.Second
	defaultNoPrimaryInterval = 2 * time.Second
)

// noPrimaryLevel is the level of the line after held, with holdTimeout
// the proxy's hold_timeout (0: unknown, ERROR after a minute).
func noPrimaryLevel(held, warnAfter, holdTimeout time.Duration) slog.Level {
	if holdTimeout <= 0 {
		holdTimeout = time.Minute
	}
	switch {
	case held >= holdTimeout && held >= warnAfter:
		return slog.LevelError
	case held >= warnAfter:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// logNoPrimary logs that the database still has no usable primary:
// candidate is the address the source names ("" none) and err why it is
// not usable.
func (e *Engine) logNoPrimary(held time.Duration, candidate string, err error) {
	attrs := []slog.Attr{slog.String("database", e.db.Name), slog.Duration("held", held)}
	msg := "role change: no primary named yet"
	if candidate != "" {
		msg = "role change: candidate not writable yet"
		attrs = append(attrs, slog.String("candidate", candidate))
	}
	if err != nil {
		attrs = append(attrs, slog.Any("err", err))
	}
	e.log.LogAttrs(context.Background(), noPrimaryLevel(held, e.opts.WarnAfter, e.opts.HoldTimeout), msg, attrs...)
}
