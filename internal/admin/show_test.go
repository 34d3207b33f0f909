package admin_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// openTransaction connects through port and leaves a transaction open, so
// that SHOW POOLS, CLIENTS and SERVERS have rows of every kind.
func openTransaction(t *testing.T, port int) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://app:apppass@127.0.0.1:%d/appdb?sslmode=disable", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	if _, err := c.Exec(context.Background(), "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	return c
}

// renamed118 are the PgBouncer 1.18 columns that 1.25 (whose names
// pauseproxy shows) renamed.
var renamed118 = map[string]string{"reserve_pool": "reserve_pool_size"}

// inOrder checks that every name of theirs (renamed by renamed) is among
// ours, in the same relative order, and returns the index in ours of
// each; it reports the first one missing or out of order.
func inOrder(ours, theirs []string, renamed map[string]string) ([]int, error) {
	var at []int
	next := 0
	for _, name := range theirs {
		if n, ok := renamed[name]; ok {
			name = n
		}
		i := slices.Index(ours[next:], name)
		if i < 0 {
			return nil, fmt.Errorf("%q missing or out of order", name)
		}
		at = append(at, next+i)
		next += i + 1
	}
	return at, nil
}

// Every SHOW of PgBouncer 1.18 answers with every one of its columns, in
// its order and with its types: scripts written for 1.18 read them by name
// and keep working. (pauseproxy's columns are 1.25's, which added some
// between 1.18's; columns1_25_test.go checks those.)
func TestShowColumnsMatchPgBouncer(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	b := startPgBouncer(t)
	ctx := context.Background()
	ourTx, theirTx := openTransaction(t, p.Port), openTransaction(t, b.Port)
	ours, theirs := console(t, p.Port, adminUser, adminPass), console(t, b.Port, adminUser, adminPass)

	for _, cmd := range []string{
		"SHOW VERSION", "SHOW CONFIG", "SHOW DATABASES", "SHOW POOLS", "SHOW CLIENTS",
		"SHOW SERVERS", "SHOW STATS", "SHOW STATS_TOTALS", "SHOW STATS_AVERAGES", "SHOW TOTALS",
		"SHOW LISTS", "SHOW USERS", "SHOW MEM", "SHOW DNS_HOSTS", "SHOW DNS_ZONES",
		"SHOW client_encoding", "show pools", "Show Lists;",
	} {
		t.Run(cmd, func(t *testing.T) {
			o, th := one(t, ours, cmd), one(t, theirs, cmd)
			at, err := inOrder(o.Columns, th.Columns, renamed118)
			if err != nil {
				t.Fatalf("%v\n ours:      %v\n pgbouncer: %v", err, o.Columns, th.Columns)
			}
			for i, j := range at {
				if o.OIDs[j] != th.OIDs[i] {
					t.Errorf("column %s has type %d, pgbouncer %d", th.Columns[i], o.OIDs[j], th.OIDs[i])
				}
			}
			if o.Tag != th.Tag {
				t.Errorf("tag %q, pgbouncer %q", o.Tag, th.Tag)
			}
			for _, row := range o.Rows {
				if len(row) != len(o.Columns) {
					t.Fatalf("row %v has %d values for %d columns", row, len(row), len(o.Columns))
				}
			}
		})
	}

	// SHOW LISTS names 1.18's lists in the same order (exporters read
	// them by name); 1.25 added peers and peer_pools between them.
	o, th := one(t, ours, "SHOW LISTS"), one(t, theirs, "SHOW LISTS")
	var on, tn []string
	for _, r := range o.Rows {
		on = append(on, r[0])
	}
	for _, r := range th.Rows {
		tn = append(tn, r[0])
	}
	if _, err := inOrder(on, tn, nil); err != nil {
		t.Errorf("SHOW LISTS rows: %v\n ours:      %v\n pgbouncer: %v", err, on, tn)
	}
	// SHOW TOTALS: 1.18's row names, in order, among ours.
	o, th = one(t, ours, "SHOW TOTALS"), one(t, theirs, "SHOW TOTALS")
	on, tn = nil, nil
	for _, r := range o.Rows {
		on = append(on, r[0])
	}
	for _, r := range th.Rows {
		tn = append(tn, r[0])
	}
	if _, err := inOrder(on, tn, nil); err != nil {
		t.Errorf("SHOW TOTALS rows: %v\n ours:      %v\n pgbouncer: %v", err, on, tn)
	}

	// The open transaction shows in both as an active client bound to an
	// active server, linked both ways.
	for name, c := range map[string]result{"ours": one(t, ours, "SHOW CLIENTS"), "pgbouncer": one(t, theirs, "SHOW CLIENTS")} {
		if n := countRows(c, map[string]string{"database": "appdb", "state": "active", "user": "app"}); n != 1 {
			t.Errorf("%s: %d active app clients on appdb, want 1\n%v", name, n, c.Rows)
		}
	}
	clients, servers := one(t, ours, "SHOW CLIENTS"), one(t, ours, "SHOW SERVERS")
	link, _ := clients.getBy("user", "app", "link")
	ptr, _ := servers.getBy("state", "active", "ptr")
	back, _ := servers.getBy("state", "active", "link")
	cptr, _ := clients.getBy("user", "app", "ptr")
	if link == "" || link != ptr || back != cptr {
		t.Errorf("client link %q / server ptr %q, server link %q / client ptr %q", link, ptr, back, cptr)
	}
	if v, _ := one(t, ours, "SHOW POOLS").get("appdb", "sv_active"); v != "1" {
		t.Errorf("SHOW POOLS appdb sv_active = %q, want 1", v)
	}

	ourTx.Exec(ctx, "COMMIT")
	theirTx.Exec(ctx, "COMMIT")

	// Commands: same tags on success, same refusals.
	for _, cmd := range []string{
		"PAUSE appdb", "RESUME appdb", "RECONNECT appdb", "RECONNECT", "DISABLE appdb", "ENABLE appdb",
		"WAIT_CLOSE appdb", "RELOAD", "SET default_pool_size = 6", "SET client_encoding = 'UTF8'",
		"KILL appdb", "RESUME appdb", "PAUSE", "RESUME",
	} {
		o, oerr := execSQL(ours, cmd)
		th, terr := execSQL(theirs, cmd)
		if oerr != nil || terr != nil {
			t.Errorf("%s: ours %v, pgbouncer %v", cmd, oerr, terr)
			continue
		}
		if o[0].Tag != th[0].Tag {
			t.Errorf("%s: tag %q, pgbouncer %q", cmd, o[0].Tag, th[0].Tag)
		}
	}
	for _, tc := range []struct {
		user, password, cmd, want string
	}{
		{adminUser, adminPass, "PAUSE nodb", "no such database: nodb"},
		{adminUser, adminPass, "DISABLE", "a database is required"},
		{adminUser, adminPass, "FROB", "invalid command 'FROB', use SHOW HELP;"},
		{adminUser, adminPass, "SHOW FROB", "invalid command 'SHOW FROB', use SHOW HELP;"},
		{statsUser, statsPass, "PAUSE", "admin access needed"},
		{statsUser, statsPass, "RELOAD", "admin access needed"},
		{statsUser, statsPass, "SET default_pool_size = 3", "admin access needed"},
	} {
		o, th := console(t, p.Port, tc.user, tc.password), console(t, b.Port, tc.user, tc.password)
		_, oerr := execSQL(o, tc.cmd)
		_, terr := execSQL(th, tc.cmd)
		if oerr == nil || terr == nil || !strings.Contains(oerr.Error(), tc.want) || !strings.Contains(terr.Error(), tc.want) {
			t.Errorf("%s as %s: ours %v, pgbouncer %v; want both %q", tc.cmd, tc.user, oerr, terr, tc.want)
		}
	}
	// A user in neither admin_users nor stats_users is refused at login.
	for _, port := range []int{p.Port, b.Port} {
		c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://plain:plainpass@127.0.0.1:%d/pgbouncer?sslmode=disable", port))
		if err == nil {
			c.Close(ctx)
			t.Errorf("port %d: plain user admitted to the console", port)
		} else if !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("port %d: %v, want not allowed", port, err)
		}
	}
}

// countRows counts the rows whose named columns have the given values.
func countRows(r result, where map[string]string) int {
	n := 0
	for _, row := range r.Rows {
		ok := true
		for col, want := range where {
			i := slices.Index(r.Columns, col)
			if i < 0 || row[i] != want {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// getBy returns column col of the first row whose column key is value.
func (r result) getBy(key, value, col string) (string, bool) {
	k, c := slices.Index(r.Columns, key), slices.Index(r.Columns, col)
	for _, row := range r.Rows {
		if k >= 0 && c >= 0 && row[k] == value {
			return row[c], true
		}
	}
	return "", false
}

// SHOW STATE answers as PgBouncer 1.19+, and the seeds/000 runbook lines run
// unchanged with psql, over TCP and the Unix socket.
func TestRunbookWithPsql(t *testing.T) {
	p := startProxy(t, proxyOptions{})
	psql := func(host string, args ...string) (string, error) {
		cmd := exec.Command("psql", append([]string{"-X", fmt.Sprintf("postgresql://admin:adminpass@%s:%d/pgbouncer", host, p.Port)}, args...)...)
		if strings.HasPrefix(host, "/") {
			cmd = exec.Command("psql", append([]string{"-X", "-h", host, "-p", fmt.Sprint(p.Port), "-U", "admin", "pgbouncer"}, args...)...)
		}
		cmd.Env = append(os.Environ(), "PGPASSWORD=adminpass")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, host := range []string{"127.0.0.1", p.SockDir} {
		if out, err := psql(host, "-c", "PAUSE"); err != nil || !strings.Contains(out, "PAUSE") {
			t.Fatalf("PAUSE via %s: %v\n%s", host, err, out)
		}
		if out, _ := psql(host, "-tA", "-c", "SHOW STATE"); out != "active|no\npaused|yes\nsuspended|no\n" {
			t.Fatalf("SHOW STATE while paused: %q", out)
		}
		if out, err := psql(host, "-c", "RESUME"); err != nil {
			t.Fatalf("RESUME via %s: %v\n%s", host, err, out)
		}
		// The runbook's check, as written in seeds/000's on_role_change.
		sh := exec.Command("sh", "-c", fmt.Sprintf(`psql -X postgresql://admin:adminpass@127.0.0.1:%d/pgbouncer -tA -c 'SHOW STATE' | grep -q 'paused|no'`, p.Port))
		if out, err := sh.CombinedOutput(); err != nil {
			t.Fatalf("runbook check failed: %v\n%s", err, out)
		}
	}
	// RESUME when nothing is paused succeeds (idempotent) and says so.
	if out, err := psql("127.0.0.1", "-c", "RESUME"); err != nil || !strings.Contains(out, "nothing is paused") {
		t.Fatalf("second RESUME: %v\n%s", err, out)
	}
	// SHOW HELP is a notice, as in PgBouncer.
	if out, err := psql("127.0.0.1", "-c", "SHOW HELP"); err != nil || !strings.Contains(out, "Console usage") || !strings.Contains(out, "SHOW TOPOLOGY") {
		t.Fatalf("SHOW HELP: %v\n%s", err, out)
	}
}
