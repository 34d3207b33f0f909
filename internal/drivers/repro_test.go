package drivers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestReproResultTypeChange is the message sequence asyncpg (and any
// driver that describes a statement once and then only binds it) sends:
// Parse+Describe once, later Bind+Execute without a Describe.
func TestReproResultTypeChange(t *testing.T) {
	for _, via := range []string{"direct", "proxy"} {
		for _, alterVia := range []string{"proxy", "direct"} {
			t.Run(via+"/alter-"+alterVia, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				p := startProxy(t)
				dsn := pg.DSN("app", "apppass", "appdb")
				pdsn := fmt.Sprintf("postgres://app:apppass@127.0.0.1:%d/appdb?sslmode=disable", p.Port)
				admin := connectDirect(t, ctx)
				if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS rtc; CREATE TABLE rtc (a int); INSERT INTO rtc VALUES (1)").ReadAll(); err != nil {
					t.Fatal(err)
				}
				cdsn := dsn
				if via == "proxy" {
					cdsn = pdsn
				}
				c, err := pgconn.Connect(ctx, cdsn)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(ctx)
				fe := c.Frontend()
				send := func(msgs ...pgproto3.FrontendMessage) []string {
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
							t.Fatal(err)
						}
						switch m := m.(type) {
						case *pgproto3.RowDescription:
							got = append(got, fmt.Sprintf("RowDescription(%d cols)", len(m.Fields)))
						case *pgproto3.DataRow:
							got = append(got, fmt.Sprintf("DataRow(%d cols)", len(m.Values)))
						case *pgproto3.ErrorResponse:
							got = append(got, "ErrorResponse("+m.Code+" "+m.Message+")")
						case *pgproto3.ReadyForQuery:
							return got
						default:
							got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
						}
					}
				}
				t.Logf("Parse+Describe: %v", send(&pgproto3.Parse{Name: "s", Query: "SELECT * FROM rtc"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}))
				t.Logf("Bind+Execute: %v", send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}))
				alterDSN := dsn
				if alterVia == "proxy" {
					alterDSN = pdsn
				}
				ac, err := pgconn.Connect(ctx, alterDSN)
				if err != nil {
					t.Fatal(err)
				}
				defer ac.Close(ctx)
				if _, err := ac.Exec(ctx, "ALTER TABLE rtc ADD COLUMN b int DEFAULT 2").ReadAll(); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 2; i++ {
					t.Logf("Bind+Execute after ALTER: %v", send(&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}))
				}
			})
		}
	}
}
