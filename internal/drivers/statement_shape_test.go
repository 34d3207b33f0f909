package drivers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestStatementKeepsResultType is the message sequence behind the
// asyncpg, postgres.js and pgjdbc failures, without a driver: clients
// Parse and Describe a named statement once and from then on only
// Bind and Execute it (those drivers cache the row description; pgjdbc
// also sends one result format per described column). After an ALTER
// TABLE ... ADD COLUMN, PostgreSQL answers every Bind of the statement
// with 0A000 "cached plan must not change result type" (routine
// RevalidateCachedQuery, which the drivers look for) until the client
// prepares it again; a statement whose result type did not change goes on
// working. Through the proxy, where the clients share one statement, each
// must see the same as directly.
func TestStatementKeepsResultType(t *testing.T) {
	for _, tc := range []struct {
		name       string
		query      string // the client's statement on table rtc (a int)
		alterProxy bool   // the ALTER goes through the proxy, else behind its back
	}{
		{name: "result type changes, ALTER through the proxy", query: "SELECT * FROM rtc", alterProxy: true},
		{name: "result type changes, ALTER behind the proxy", query: "SELECT * FROM rtc"},
		{name: "result type kept, ALTER through the proxy", query: "SELECT a FROM rtc", alterProxy: true},
		{name: "result type kept, ALTER behind the proxy", query: "SELECT a FROM rtc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t)
			proxyDSN := fmt.Sprintf("postgres://app:apppass@127.0.0.1:%d/appdb?sslmode=disable", p.Port)
			directDSN := pg.DSN("app", "apppass", "appdb")
			alterDSN := directDSN
			if tc.alterProxy {
				alterDSN = proxyDSN
			}
			direct := statementAcrossAlter(t, directDSN, alterDSN, tc.query)
			proxied := statementAcrossAlter(t, proxyDSN, alterDSN, tc.query)
			if !slices.Equal(direct, proxied) {
				t.Errorf("through the proxy the clients see:\n  %s\ndirectly on PostgreSQL:\n  %s",
					strings.Join(proxied, "\n  "), strings.Join(direct, "\n  "))
			}
		})
	}
}

// statementAcrossAlter recreates table rtc; two clients connected to
// dsn (a and b, which share the statement in the proxy) prepare query as
// statement s and run it; a column is added to rtc through alterDSN; then
// they run s with Bind and Execute only, and prepare the query again, in
// turns. It returns what the clients received, one line per Sync.
func statementAcrossAlter(t *testing.T, dsn, alterDSN, query string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := connectDirect(t, ctx)
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS rtc; CREATE TABLE rtc (a int); INSERT INTO rtc VALUES (1)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	var log []string
	// roundTrip sends msgs and a Sync on c, and logs what came back until
	// ReadyForQuery.
	roundTrip := func(c *pgconn.PgConn, what string, msgs ...pgproto3.FrontendMessage) {
		fe := c.Frontend()
		for _, m := range msgs {
			fe.Send(m)
		}
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			m, err := c.ReceiveMessage(ctx)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			switch m := m.(type) {
			case *pgproto3.RowDescription:
				got = append(got, fmt.Sprintf("RowDescription(%d columns)", len(m.Fields)))
			case *pgproto3.DataRow:
				got = append(got, fmt.Sprintf("DataRow(%d columns)", len(m.Values)))
			case *pgproto3.ErrorResponse:
				// The routine too: asyncpg, pgjdbc and postgres.js
				// re-prepare only when it is RevalidateCachedQuery.
				got = append(got, fmt.Sprintf("ErrorResponse(%s %s, routine %s)", m.Code, m.Message, m.Routine))
			case *pgproto3.ReadyForQuery:
				log = append(log, what+": "+strings.Join(got, ", "))
				return
			default:
				got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
			}
		}
	}
	connect := func(dsn string) *pgconn.PgConn {
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	clients := []struct {
		name string
		conn *pgconn.PgConn
	}{{"a", connect(dsn)}, {"b", connect(dsn)}}
	bindExecute := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}}
	for _, c := range clients {
		roundTrip(c.conn, c.name+" Parse+Describe", &pgproto3.Parse{Name: "s", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s"})
		roundTrip(c.conn, c.name+" Bind+Execute", bindExecute...)
	}
	if _, err := connect(alterDSN).Exec(ctx, "ALTER TABLE rtc ADD COLUMN b int DEFAULT 2").ReadAll(); err != nil {
		t.Fatal(err)
	}
	// Interleaved as concurrent drivers do: a meets the change and
	// prepares the query again (under a new name, as asyncpg, postgres.js
	// and pgjdbc do) while b still holds the old statement; then b closes
	// it and prepares it again under the same name.
	a, b := clients[0].conn, clients[1].conn
	parse2 := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: "s2", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s2"},
		&pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{},
	}
	bind2 := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{}}
	roundTrip(a, "a Bind+Execute s after ALTER", bindExecute...)
	roundTrip(a, "a Parse s2 (same query)+Describe+Bind+Execute", parse2...)
	roundTrip(b, "b Bind+Execute s after ALTER", bindExecute...)
	roundTrip(a, "a Bind+Execute s2", bind2...)
	roundTrip(b, "b Bind+Execute s again", bindExecute...)
	roundTrip(a, "a Bind+Execute s again", bindExecute...)
	roundTrip(b, "b Close s, Parse s+Describe+Bind+Execute",
		&pgproto3.Close{ObjectType: 'S', Name: "s"},
		&pgproto3.Parse{Name: "s", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s"},
		&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{})
	roundTrip(a, "a Bind+Execute s2 again", bind2...)
	roundTrip(b, "b Bind+Execute s", bindExecute...)
	return log
}
