package router

import "testing"

func TestEffectOf(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want effect
		name string
	}{
		{sql: "SELECT 1", want: effNone},
		{sql: "select * from settings", want: effNone},
		{sql: "DEALLOCATE ALL", want: effDeallocAll},
		{sql: "deallocate prepare all;", want: effDeallocAll},
		{sql: "  DEALLOCATE _pg3_4 ", want: effDealloc, name: "_pg3_4"},
		{sql: `DEALLOCATE PREPARE "S_1"`, want: effDealloc, name: "S_1"},
		{sql: "DEALLOCATE", want: effNone},
		{sql: "DISCARD ALL", want: effDiscardAll},
		{sql: "-- pool reset\nDISCARD ALL", want: effDiscardAll},
		{sql: "/* x */ discard all\x00", want: effDiscardAll},
		{sql: "DISCARD PLANS", want: effNone},
		{sql: "DISCARD TEMP", want: effNone},
		{sql: "RESET ALL", want: effResetAll},
		{sql: "reset Search_Path", want: effReset, name: "search_path"},
		{sql: "SET search_path TO DEFAULT", want: effReset, name: "search_path"},
		{sql: "SET search_path=default", want: effReset, name: "search_path"},
		{sql: "SET SESSION statement_timeout = DEFAULT", want: effReset, name: "statement_timeout"},
		{sql: "SET search_path TO tenant_a", want: effSet, name: "search_path"},
		{sql: "set statement_timeout=5", want: effSet, name: "statement_timeout"},
		{sql: "SET LOCAL search_path TO x", want: effNone},
		{sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", want: effNone},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", want: effSet, name: "default_transaction_isolation"},
		{sql: "SET application_name = 'x'", want: effNone},
		{sql: "SET TimeZone TO 'UTC'", want: effNone},
		{sql: "SET ROLE admin", want: effNone},
		{sql: "SET SESSION AUTHORIZATION DEFAULT", want: effNone},
		{sql: "SETTINGS", want: effNone},
		{sql: "resetting", want: effNone},
		{sql: "SET myapp.tenant = '3'", want: effSet, name: "myapp.tenant"},
	} {
		got, name := effectOf([]byte(tc.sql))
		if got != tc.want || name != tc.name {
			t.Errorf("effectOf(%q) = %d %q, want %d %q", tc.sql, got, name, tc.want, tc.name)
		}
	}
}

func BenchmarkEffectOfSelect(b *testing.B) {
	q := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1\x00")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		effectOf(q)
	}
}
