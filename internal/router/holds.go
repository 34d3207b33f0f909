package router

// An admin PAUSE without a database name (and SIGUSR1) pauses the whole
// proxy, including databases created later from the "*" entry, as
// PgBouncer's global PAUSE does. The caller holds the existing databases
// itself (Database.Hold); HoldNew covers the ones to come.

// HoldNew makes databases created from now on start held for reason (on),
// or stops doing so (off). Databases that exist are not touched.
func (r *Router) HoldNew(reason string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !on {
		delete(r.holdAll, reason)
		return
	}
	if r.holdAll == nil {
		r.holdAll = make(map[string]bool)
	}
	r.holdAll[reason] = true
}

// holdNew applies the HoldNew reasons to a database just created, and
// returns it. Called with r.mu held (lock order: Router.mu before
// Database.mu).
func (r *Router) holdNew(d *Database) *Database {
	for reason := range r.holdAll {
		d.Hold(reason)
	}
	return d
}
