package router

import (
	"errors"

	"github.com/pauseproxy/pauseproxy/internal/pool"
)

// ProbeError is a Probe whose server login failed: the login's user and
// the reason, classified as the pools classify their own logins
// (pool.LoginError).
type ProbeError struct {
	User string
	Err  error
}

func (e *ProbeError) Error() string { return e.Err.Error() }
func (e *ProbeError) Unwrap() error { return e.Err }

// RefuseLogins is told the outcome of a role-change engine's check (a
// Probe). When the server refused the login for a reason that waiting
// cannot heal (a wrong password, a missing database, a certificate that
// does not verify), the pools of that login fail the clients held for the
// check now, with the server's reason, and later ones at once, instead of
// holding them for hold_timeout; it reports true. Any other outcome
// (nil, a node down or starting up) lifts the refusal so that clients wait
// in the hold again. Retarget lifts it too.
func (d *Database) RefuseLogins(err error) bool {
	var pe *ProbeError
	var le *pool.LoginError
	refused := errors.As(err, &pe) && errors.As(err, &le) && !le.Wait
	d.mu.Lock()
	defer d.mu.Unlock()
	if !refused {
		if d.refusal != nil {
			d.refusal = nil
			for _, p := range d.pools {
				p.Refuse(nil)
			}
		}
		return false
	}
	d.refusal, d.refusalUser = le, pe.User
	if p, ok := d.pools[pe.User]; ok {
		p.Refuse(le)
	}
	return true
}
