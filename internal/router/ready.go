package router

import (
	"context"
	"sync"
)

// ReadyCheck says what keeps one database from serving its target role
// now, or "" when it can.
type ReadyCheck func(ctx context.Context, d *Database) string

// Ready runs check over every database (not the "*" fallback entry) at
// once. The proxy is ready while at least one database can serve, or
// none is configured: one database without a primary must not take the
// whole proxy out of a load balancer while the others serve. The problems
// of those that cannot are returned either way.
func (r *Router) Ready(ctx context.Context, check ReadyCheck) (bool, []string) {
	dbs := r.Databases()
	problems := make([]string, len(dbs))
	var wg sync.WaitGroup
	for i, d := range dbs {
		if d.Name == "*" {
			continue
		}
		wg.Go(func() { problems[i] = check(ctx, d) })
	}
	wg.Wait()
	var out []string
	serving := 0
	for i, p := range problems {
		switch {
		case dbs[i].Name == "*":
		case p == "":
			serving++
		default:
			out = append(out, p)
		}
	}
	return serving > 0 || len(out) == 0, out
}

// ReadyDatabase runs check for the database named name; found is false
// for an unknown one.
func (r *Router) ReadyDatabase(ctx context.Context, name string, check ReadyCheck) (ok bool, problems []string, found bool) {
	for _, d := range r.Databases() {
		if d.Name == name && name != "*" {
			if p := check(ctx, d); p != "" {
				return false, []string{p}, true
			}
			return true, nil, true
		}
	}
	return false, nil, false
}
