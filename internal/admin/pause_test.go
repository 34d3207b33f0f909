package admin_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
)

// pausedDB reads SHOW DATABASES' paused column for appdb.
func pausedDB(t testing.TB, p *testProxy) string {
	t.Helper()
	c := console(t, p.Port, adminUser, adminPass)
	defer c.Close(context.Background())
	v, _ := one(t, c, "SHOW DATABASES").get("appdb", "paused")
	return v
}

// PAUSE returns only once the transaction in flight has committed, and
// the next transaction waits until RESUME.
func TestPauseWaitsForTransactionAndHoldsTheNext(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	a, b := p.connect(t), p.connect(t)
	if _, err := a.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	adm := console(t, p.Port, adminUser, adminPass)
	paused := make(chan error, 1)
	go func() {
		_, err := execSQL(adm, "PAUSE appdb")
		paused <- err
	}()
	proxytest.Eventually(t, 5*time.Second, "appdb paused", func() bool { return pausedDB(t, p) == "1" })
	select {
	case err := <-paused:
		t.Fatalf("PAUSE returned (%v) while a transaction was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}

	// A new transaction waits in the hold.
	held := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT 2")
		held <- err
	}()
	stats := console(t, p.Port, statsUser, statsPass)
	proxytest.Eventually(t, 5*time.Second, "a waiting client in SHOW POOLS", func() bool {
		v, _ := one(t, stats, "SHOW POOLS").get("appdb", "cl_waiting")
		return v == "1"
	})
	// SHOW CLIENTS tells how long it has waited (wait, wait_us), as
	// PgBouncer does.
	time.Sleep(1100 * time.Millisecond)
	if w, ok := one(t, stats, "SHOW CLIENTS").getBy("state", "waiting", "wait"); !ok || w == "0" {
		t.Errorf("SHOW CLIENTS: the held client's wait is %q (found %v), want at least 1 s", w, ok)
	}

	// The transaction in flight is not held: it commits, and PAUSE returns.
	if _, err := a.Exec(ctx, "COMMIT"); err != nil {
		t.Fatalf("COMMIT while pausing: %v", err)
	}
	select {
	case err := <-paused:
		if err != nil {
			t.Fatalf("PAUSE: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("PAUSE did not return after the transaction committed")
	}
	select {
	case err := <-held:
		t.Fatalf("the held transaction ran (%v) before RESUME", err)
	case <-time.After(300 * time.Millisecond):
	}
	run(t, adm, "RESUME appdb")
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("held transaction after RESUME: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held transaction did not run after RESUME")
	}
	// The event log tells the story.
	var kinds []string
	for _, e := range p.Events.List() {
		kinds = append(kinds, e.Kind+"/"+e.Outcome)
	}
	if !strings.Contains(strings.Join(kinds, " "), "pause/paused resume/resumed") {
		t.Errorf("events %v", kinds)
	}
}

// With pause_timeout_action = resume (the default), a PAUSE that times out
// fails and lets traffic flow again.
func TestPauseTimeoutResumes(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	ctx := context.Background()
	a := p.connect(t)
	if _, err := a.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	adm := console(t, p.Port, adminUser, adminPass)
	start := time.Now()
	_, err := execSQL(adm, "PAUSE appdb TIMEOUT '300ms'")
	if sqlState(err) != "57014" || !strings.Contains(err.Error(), "timed out after 300ms with 1 transactions still running") {
		t.Fatalf("PAUSE with a transaction open: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("PAUSE gave up after %s, want about 300ms", d)
	}
	if v := pausedDB(t, p); v != "0" {
		t.Fatalf("paused = %s after the timeout, want 0", v)
	}
	b := p.connect(t)
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := b.Exec(qctx, "SELECT 1"); err != nil {
		t.Fatalf("traffic after a timed-out PAUSE: %v", err)
	}
	if _, err := a.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
}

// With pause_timeout_action = cancel, the stragglers are cancelled (a
// running query) or cut (idle in transaction) and the PAUSE succeeds; the
// clients stay connected.
func TestPauseTimeoutCancels(t *testing.T) {
	p := startProxy(t, proxyOptions{Extra: `pause_timeout_action = "cancel"`})
	ctx := context.Background()
	running, idle := p.connect(t), p.connect(t)
	slept := make(chan error, 1)
	go func() {
		_, err := running.Exec(ctx, "SELECT pg_sleep(30)")
		slept <- err
	}()
	if _, err := idle.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	adm := console(t, p.Port, adminUser, adminPass)
	proxytest.Eventually(t, 5*time.Second, "two active servers", func() bool {
		v, _ := one(t, adm, "SHOW POOLS").get("appdb", "sv_active")
		return v == "2"
	})
	res, err := execSQL(adm, "PAUSE appdb TIMEOUT '200ms'")
	if err != nil {
		t.Fatalf("PAUSE with action cancel: %v", err)
	}
	if res[0].Tag != "PAUSE" {
		t.Fatalf("tag %q", res[0].Tag)
	}
	select {
	case err := <-slept:
		if sqlState(err) != "57014" {
			t.Fatalf("running query: %v, want 57014 (cancelled)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the running query was not cancelled")
	}
	if v := pausedDB(t, p); v != "1" {
		t.Fatalf("paused = %s, want 1", v)
	}
	run(t, adm, "RESUME")
	// The idle-in-transaction client lost its transaction and hears it on
	// its next statement; then it goes on.
	if _, err := idle.Exec(ctx, "SELECT 1"); sqlState(err) != "08006" {
		t.Fatalf("idle-in-transaction client after the cut: %v, want 08006", err)
	}
	for _, c := range []*pgx.Conn{idle, running} {
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatalf("client after cancel and RESUME: %v", err)
		}
	}
	found := false
	for _, e := range p.Events.List() {
		if e.Kind == "pause" && e.Outcome == "cancelled" && strings.Contains(e.Detail, "2 cancel requests sent, 1 server connections closed") {
			found = true
		}
	}
	if !found {
		t.Errorf("no pause/cancelled event with the counts: %+v", p.Events.List())
	}
}

// A PAUSE with EXPIRE resumes by itself; a later PAUSE without EXPIRE
// makes it indefinite again.
func TestPauseExpire(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	adm := console(t, p.Port, adminUser, adminPass)
	run(t, adm, "PAUSE appdb EXPIRE '300ms'")
	if v := pausedDB(t, p); v != "1" {
		t.Fatalf("paused = %s, want 1", v)
	}
	proxytest.Eventually(t, 3*time.Second, "the pause to expire", func() bool { return pausedDB(t, p) == "0" })
	c := p.connect(t)
	if _, err := c.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	expired := false
	for _, e := range p.Events.List() {
		expired = expired || e.Kind == "resume" && e.Outcome == "expired"
	}
	if !expired {
		t.Errorf("no resume/expired event: %+v", p.Events.List())
	}

	run(t, adm, "PAUSE EXPIRE '200ms'")
	run(t, adm, "PAUSE")
	time.Sleep(600 * time.Millisecond)
	if st := one(t, adm, "SHOW STATE"); st.Rows[1][1] != "yes" {
		t.Fatalf("the first PAUSE's expiry ended the second's pause: %v", st.Rows)
	}
	run(t, adm, "RESUME")
	if st := one(t, adm, "SHOW STATE"); st.Rows[1][1] != "no" {
		t.Fatalf("SHOW STATE after RESUME: %v", st.Rows)
	}
}

// PAUSE and RESUME from several sessions at once, with and without
// database names, timeouts and expiries, while clients run transactions:
// no error but the documented ones, no race, and after a final RESUME no
// hold is left and traffic flows.
func TestConcurrentPauseResume(t *testing.T) {
	p := startProxy(t, proxyOptions{Extra: `hold_timeout = "20s"`})
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 3; w++ {
		c := p.connect(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Exec(ctx, "BEGIN; SELECT 1; COMMIT"); err != nil {
					errs <- fmt.Errorf("client: %w", err)
					return
				}
			}
		}()
	}
	cmds := []string{"PAUSE", "PAUSE appdb", "RESUME", "RESUME appdb", "PAUSE appdb TIMEOUT '50ms'",
		"PAUSE TIMEOUT '50ms' EXPIRE '30ms'", "PAUSE appdb EXPIRE '20ms'", "SHOW STATE", "SHOW DATABASES"}
	var admins sync.WaitGroup
	for a := 0; a < 4; a++ {
		adm := console(t, p.Port, adminUser, adminPass)
		admins.Add(1)
		go func() {
			defer admins.Done()
			for i := 0; i < 40; i++ {
				cmd := cmds[rand.IntN(len(cmds))]
				if _, err := execSQL(adm, cmd); err != nil && sqlState(err) != "57014" {
					errs <- fmt.Errorf("%s: %w", cmd, err)
					return
				}
			}
		}()
	}
	admins.Wait()
	adm := console(t, p.Port, adminUser, adminPass)
	run(t, adm, "RESUME")
	time.Sleep(100 * time.Millisecond) // let any expiry timer still due fire harmlessly
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := one(t, adm, "SHOW STATE"); st.Rows[1][1] != "no" {
		t.Fatalf("paused after the final RESUME: %v", st.Rows)
	}
	db := one(t, adm, "SHOW DATABASES")
	if v, _ := db.get("appdb", "held_by"); v != "" {
		t.Fatalf("appdb still held by %q", v)
	}
	c := p.connect(t)
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := c.Exec(qctx, "SELECT 1"); err != nil {
		t.Fatalf("traffic after the final RESUME: %v", err)
	}
}

// A proxy-wide PAUSE also holds a database created later from "*", and a
// RESUME of one database releases it alone.
func TestPauseAllCoversNewDatabases(t *testing.T) {
	p := startProxy(t, proxyOptions{Extra: "\n[databases.\"*\"]\nhost = \"127.0.0.1\"\nport = " + fmt.Sprint(pg.Port)})
	adm := console(t, p.Port, adminUser, adminPass)
	run(t, adm, "PAUSE")
	// What a client's login to "postgres" does first (the login itself
	// then waits for RESUME: it needs a server's parameters).
	if _, ok := p.Router.Database("postgres"); !ok {
		t.Fatal("no database postgres from *")
	}
	if v, _ := one(t, adm, "SHOW DATABASES").get("postgres", "paused"); v != "1" {
		t.Fatalf("database created from * during PAUSE: paused = %q, want 1", v)
	}
	run(t, adm, "RESUME postgres")
	ctx := context.Background()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(qctx, p.DSN("app", "apppass", "postgres"))
	if err != nil {
		t.Fatalf("after RESUME postgres: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(qctx, "SELECT 1"); err != nil {
		t.Fatalf("after RESUME postgres: %v", err)
	}
	if v, _ := one(t, adm, "SHOW DATABASES").get("appdb", "paused"); v != "1" {
		t.Fatalf("appdb paused = %q after RESUME postgres, want 1", v)
	}
	run(t, adm, "RESUME")
}
