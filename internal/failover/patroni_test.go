package failover_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pauseproxy/pauseproxy/internal/patronitest"
)

// patroniDB is a [databases.db] table following cluster c through source
// ("patroni" or "consul").
func patroniDB(c *patronitest.Cluster, source string) string {
	login := fmt.Sprintf("dbname = \"postgres\"\nuser = %q\npassword = %q\n", c.SuperUser, c.SuperPassword)
	if source == "consul" {
		return fmt.Sprintf("discovery = \"consul\"\nconsul_addr = %q\nconsul_service = %q\n%s", c.ConsulAddr, c.Scope, login)
	}
	urls := make([]string, len(c.PatroniURLs()))
	for i, u := range c.PatroniURLs() {
		urls[i] = fmt.Sprintf("%q", u)
	}
	return fmt.Sprintf("discovery = \"patroni\"\npatroni_urls = [%s]\n%s", strings.Join(urls, ", "), login)
}

// TestSwitchoverBehindTheProxysBack runs a Patroni switchover the proxy
// was not told about, under select-only autocommit load: the proxy must
// notice (discovery and the refusals of the stopping primary), hold,
// follow, and run the refused queries again, so that no client sees an
// error. Then on a cluster whose store is Consul, followed through Consul,
// under TPC-B: the failover key announces the switchover before the old
// primary stops, so the proxy holds ahead and no transaction is cut.
func TestSwitchoverBehindTheProxysBack(t *testing.T) {
	for _, store := range []string{patronitest.StoreEtcd, patronitest.StoreConsul} {
		t.Run(store, func(t *testing.T) {
			c := patronitest.Require(t, patronitest.Options{Store: store})
			source := "patroni"
			if store == patronitest.StoreConsul {
				source = "consul"
			}
			p := startProxy(t, patroniDB(c, source), `hold_timeout = "30s"`)
			ctx := context.Background()
			if out := pgbenchRun(t, p, "-i", "-q", "-s", "1"); !strings.Contains(out, "done") {
				t.Fatalf("pgbench -i: %s", out)
			}
			old, err := c.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			replicas, err := c.Replicas(ctx)
			if err != nil || len(replicas) == 0 {
				t.Fatalf("no replica: %v", err)
			}
			// Through Patroni's REST API the proxy learns of the
			// switchover when the old primary stops: autocommit
			// SELECTs survive (the safe retry), explicit transactions
			// cut mid-way could not. Through Consul it reads the
			// failover key first and holds ahead, so even TPC-B's
			// explicit transactions see no error.
			load := []string{"-S", "-c", "8", "-j", "2", "-T", "12", "-n"}
			if source == "consul" {
				load = []string{"-c", "8", "-j", "2", "-T", "12", "-n"}
			}
			done := make(chan string, 1)
			go func() { done <- pgbenchRun(t, p, load...) }()
			time.Sleep(3 * time.Second)
			start := time.Now()
			if err := c.Switchover(ctx, replicas[0].Name); err != nil {
				t.Fatal(err)
			}
			t.Logf("patroni switchover %s -> %s took %s", old.Name, replicas[0].Name, time.Since(start))
			out := <-done
			requireClean(t, out)
			t.Logf("pgbench across a switchover behind the proxy's back:\n%s", out)
			// Traffic now goes to the new primary, which is writable.
			conn, err := pgx.Connect(ctx, p.DSN())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var port int
			var inRecovery bool
			if err := conn.QueryRow(ctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&port, &inRecovery); err != nil {
				t.Fatal(err)
			}
			if port != replicas[0].PGPort || inRecovery {
				t.Fatalf("after the switchover the proxy serves port %d (recovery %v), want the new primary %d", port, inRecovery, replicas[0].PGPort)
			}
		})
	}
}
