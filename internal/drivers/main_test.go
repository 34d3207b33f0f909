package drivers_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// pg is the package's PostgreSQL cluster (SCRAM for TCP logins, as the
// drivers would meet in production). Role app/apppass owns database appdb.
var pg *pgtest.Cluster

func TestMain(m *testing.M) {
	pgtest.Main(m, pgtest.Options{AuthMethod: "scram-sha-256", Conf: map[string]string{"max_connections": "200"}}, func(c *pgtest.Cluster) {
		pg = c
		ctx := context.Background()
		for _, sql := range []string{
			`CREATE ROLE app LOGIN PASSWORD 'apppass'`,
			`CREATE DATABASE appdb OWNER app`,
		} {
			if err := c.Exec(ctx, sql); err != nil {
				fmt.Fprintln(os.Stderr, "setup:", err)
				os.Exit(1)
			}
		}
	}, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"))
}
