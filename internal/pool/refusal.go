package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// LoginError is a failed server login as the DialFunc classified it. The
// pool does not speak SQL, so the dial function (the router's) decides
// whether the refusal can heal by waiting.
//
// Waiting helps when the server is full (53300 too_many_connections),
// starting up or shutting down (57P03), or refusing connections during a
// restart: the pool then keeps its waiters queued for a connection that is
// released, or for the next login attempt after server_login_retry, as
// PgBouncer does. It does not help for a wrong password (28P01), a
// missing database (3D000), a certificate that does not verify, or an
// authentication method the proxy cannot do: waiters then fail at once
// with the server's own reason.
type LoginError struct {
	Err  error
	Wait bool // the refusal can heal by waiting
}

func (e *LoginError) Error() string { return e.Err.Error() }
func (e *LoginError) Unwrap() error { return e.Err }

// canWait reports whether err is a login refusal that heals by waiting.
func canWait(err error) bool {
	var le *LoginError
	return errors.As(err, &le) && le.Wait
}

// minLoginRetry spaces login attempts after a refusal that heals by waiting
// when server_login_retry is 0, so that waiters do not spin on a full
// server.
const minLoginRetry = 250 * time.Millisecond

// loginBackoffLocked says whether the pool may dial now, after the last
// login failed less than server_login_retry ago (PgBouncer's
// server_login_retry: a broken backend is not hammered by every arriving
// client). A refusal that cannot heal is returned as an error for the
// acquisition, unless the pool has open connections that will be
// released; one that can heal, or such a pool, makes the acquisition wait
// for a released connection or the next attempt (wait true).
func (p *Pool) loginBackoffLocked() (err error, wait bool) {
	if p.loginErr == nil {
		return nil, false
	}
	retry := p.cfg.LoginRetry
	if canWait(p.loginErr) {
		retry = max(retry, minLoginRetry)
		return nil, time.Since(p.loginAt) < retry
	}
	if retry <= 0 || time.Since(p.loginAt) >= retry {
		return nil, false
	}
	if p.liveLocked() {
		return nil, true
	}
	return loginError(p.loginErr), false
}

// liveLocked reports whether the pool has open server connections (not
// counting those being dialed): a waiter will get one when it is
// released, so no login failure needs to fail it.
func (p *Pool) liveLocked() bool { return p.total-p.dialing > 0 }

// waitAfterLogin says whether an acquisition whose own login failed with
// err waits for another round instead of failing: when the refusal heals
// by waiting, or the pool has open connections to hand out.
func (p *Pool) waitAfterLogin(err error) bool {
	if canWait(err) {
		return true
	}
	var le *LoginError
	if !errors.As(err, &le) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.liveLocked()
}

// loginFailedLocked records a failed login. A refusal that heals by
// waiting arms a timer that serves the waiters (lets one of them dial)
// when server_login_retry has passed.
func (p *Pool) loginFailedLocked(err error) {
	p.loginErr, p.loginAt = err, time.Now()
	if !canWait(err) || p.closed {
		return
	}
	retry := max(p.cfg.LoginRetry, minLoginRetry)
	if p.retryTimer == nil {
		p.retryTimer = time.AfterFunc(retry, p.retryLogin)
	} else {
		p.retryTimer.Reset(retry)
	}
}

// retryLogin runs when server_login_retry has passed after a refusal that
// heals by waiting.
func (p *Pool) retryLogin() {
	p.mu.Lock()
	if !p.closed {
		p.serveLocked()
	}
	p.mu.Unlock()
}

// loginQuiet is how long a login failure reason stays "the same" for the
// log: the same refusal after a quieter spell is logged again.
const loginQuiet = time.Minute

// noteLoginLocked logs a login failure once per change of its reason, not
// once per client or per attempt, counting the repeats it does not log;
// the count goes out with the next line. A server that is only full keeps
// succeeding and failing in turn, so successes do not reset the reason;
// the first success after a failure that waiting cannot heal is logged
// ("works again").
func (p *Pool) noteLoginLocked(t Target, err error) {
	if err == nil {
		if p.loggedReason != "" && !p.loggedWait {
			p.log.Info("server login works again", slog.String("pool", p.Name), slog.String("target", addr(t)),
				slog.Int("refusals_not_logged", p.loginRepeats))
			p.loggedReason, p.loginRepeats = "", 0
		}
		return
	}
	reason, wait := err.Error(), canWait(err)
	now := time.Now()
	if reason == p.loggedReason && now.Sub(p.loggedAt) < loginQuiet {
		p.loginRepeats++
		p.loggedAt = now
		return
	}
	level, msg := slog.LevelError, "server login failed; waiting clients get the reason"
	if wait {
		level, msg = slog.LevelWarn, "server login refused; clients wait for a connection of the pool (server_login_retry)"
	}
	attrs := []slog.Attr{slog.String("pool", p.Name), slog.String("target", addr(t)), slog.Any("err", err)}
	if p.loginRepeats > 0 {
		attrs = append(attrs, slog.Int("previous_refusals_not_logged", p.loginRepeats))
	}
	p.log.LogAttrs(context.Background(), level, msg, attrs...)
	p.loggedReason, p.loggedWait, p.loggedAt, p.loginRepeats = reason, wait, now, 0
}

// Refuse marks the pool's server login as refused for a reason that
// waiting cannot heal (a role-change engine's check found a wrong password
// or a missing database): acquisitions waiting in a hold fail now with it,
// and new ones while held fail at once instead of waiting out
// hold_timeout. Refuse(nil), or a new target (SetTarget), clears it.
func (p *Pool) Refuse(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.refusal = nil
		return
	}
	p.refusal = loginError(err)
	p.failHeldLocked(p.refusal)
}

// failHeldLocked answers every waiter queued because of a hold with err.
func (p *Pool) failHeldLocked(err error) {
	var keep []*waiter
	for _, w := range p.waiters.all() {
		if w.held {
			w.ch <- grant{err: err}
		} else {
			keep = append(keep, w)
		}
	}
	p.waiters.reset()
	for _, w := range keep {
		p.waiters.push(w)
	}
}

// loginError is what a client is told when the server login failed.
// Refusals that cannot heal carry 08001 (sqlclient unable to establish
// connection) and the server's own reason; the server's SQLSTATE (28P01,
// 3D000) is in the message, not the code, since it is not the client's
// password or database that was refused.
func loginError(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return &Error{Code: pe.Code, Msg: pe.Msg, Err: err, Dial: true}
	}
	code := "08006"
	var le *LoginError
	if errors.As(err, &le) && !le.Wait {
		code = "08001"
	}
	return &Error{Code: code, Msg: "pauseproxy: cannot connect to server: " + err.Error(), Err: err, Dial: true}
}

// queueWaitError is the answer to an acquisition that waited
// query_wait_timeout, naming the last refused login when there is one.
func (p *Pool) queueWaitErrorLocked(limit time.Duration) error {
	msg := fmt.Sprintf("pauseproxy: no server connection available within %s (query_wait_timeout, pool_size %d)", limit, p.cfg.Size)
	if p.loginErr != nil {
		msg += "; last server login: " + p.loginErr.Error()
	}
	return &Error{Code: "53300", Msg: msg}
}
