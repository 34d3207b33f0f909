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
// asyncpg, postgres.js and pgjdbc failures, without a driver: a client
// Parses and Describes a named statement once and from then on only
// Binds and Executes it (those drivers cache the row description; pgjdbc
// also sends one result format per described column). After an ALTER
// TABLE ... ADD COLUMN, PostgreSQL answers every Bind of the statement
// with 0A000 "cached plan must not change result type" until the client
// prepares it again; a statement whose result type did not change goes on
// working. Through the proxy the client must see the same.
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
				t.Errorf("through the proxy the client sees:\n  %s\ndirectly on PostgreSQL:\n  %s",
					strings.Join(proxied, "\n  "), strings.Join(direct, "\n  "))
			}
		})
	}
}

// statementAcrossAlter recreates table rtc, prepares query as statement s
// on a connection to dsn, runs it, adds a column to rtc through alterDSN,
// and runs s twice more with Bind and Execute only. It returns what the
// client received, one line per Sync.
func statementAcrossAlter(t *testing.T, dsn, alterDSN, query string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := connectDirect(t, ctx)
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS rtc; CREATE TABLE rtc (a int); INSERT INTO rtc VALUES (1)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var log []string
	// roundTrip sends msgs and a Sync, and describes what came back
	// until ReadyForQuery.
	roundTrip := func(what string, msgs ...pgproto3.FrontendMessage) {
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
				got = append(got, fmt.Sprintf("ErrorResponse(%s %s)", m.Code, m.Message))
			case *pgproto3.ReadyForQuery:
				log = append(log, what+": "+strings.Join(got, ", "))
				return
			default:
				got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
			}
		}
	}
	bindExecute := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}}
	roundTrip("Parse+Describe", &pgproto3.Parse{Name: "s", Query: query}, &pgproto3.Describe{ObjectType: 'S', Name: "s"})
	roundTrip("Bind+Execute", bindExecute...)

	ac, err := pgconn.Connect(ctx, alterDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close(context.Background())
	if _, err := ac.Exec(ctx, "ALTER TABLE rtc ADD COLUMN b int DEFAULT 2").ReadAll(); err != nil {
		t.Fatal(err)
	}
	roundTrip("Bind+Execute after ALTER", bindExecute...)
	roundTrip("Bind+Execute again", bindExecute...)
	return log
}
