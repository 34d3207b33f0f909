package router

// Holds that cover every database: an admin PAUSE without a database name
// (and SIGUSR1) pauses the whole proxy, including databases created later
// from the "*" entry, as PgBouncer's global PAUSE does.

// HoldAll holds every database for reason (see Database.Hold), and each
// database created from now on until UnholdAll(reason).
func (r *Router) HoldAll(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holdAll == nil {
		r.holdAll = make(map[string]bool)
	}
	r.holdAll[reason] = true
	for _, d := range r.dbs {
		d.Hold(reason)
	}
}

// UnholdAll releases reason on every database and stops holding new ones
// for it.
func (r *Router) UnholdAll(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.holdAll, reason)
	for _, d := range r.dbs {
		d.Unhold(reason)
	}
}

// HeldAll reports whether reason holds every database.
func (r *Router) HeldAll(reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holdAll[reason]
}

// holdNew applies the proxy-wide holds to a database just created, and
// returns it. Called with r.mu held (lock order: Router.mu before
// Database.mu).
func (r *Router) holdNew(d *Database) *Database {
	for reason := range r.holdAll {
		d.Hold(reason)
	}
	return d
}
