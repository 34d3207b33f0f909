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
		{sql: "SET search_path TO DEFAULT", want: effSetDefault, name: "search_path"},
		{sql: "SET search_path=default", want: effSetDefault, name: "search_path"},
		{sql: "SET SESSION statement_timeout = DEFAULT", want: effSetDefault, name: "statement_timeout"},
		{sql: "SET search_path TO tenant_a", want: effSet, name: "search_path"},
		{sql: "set statement_timeout=5", want: effSet, name: "statement_timeout"},
		{sql: "SET LOCAL search_path TO x", want: effNone},
		{sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", want: effNone},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", want: effSet, name: "default_transaction_isolation"},
		{sql: "SET application_name = 'x'", want: effNone},
		{sql: "SET TimeZone TO 'UTC'", want: effNone},
		{sql: "SET ROLE admin", want: effSet, name: "role"},
		{sql: "SET SESSION AUTHORIZATION DEFAULT", want: effSet, name: "session_authorization"},
		{sql: "LISTEN jobs", want: effListen, name: "jobs"},
		{sql: `listen "Jobs"`, want: effListen, name: "Jobs"},
		{sql: "UNLISTEN *", want: effUnlisten, name: "*"},
		{sql: "unlisten jobs;", want: effUnlisten, name: "jobs"},
		{sql: "listening", want: effNone},
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

func TestStatements(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want []string
	}{
		{sql: "SELECT 1", want: []string{"SELECT 1"}},
		{sql: "SELECT 1;", want: []string{"SELECT 1;"}},
		{sql: "SET a = 1; SET b = 2", want: []string{"SET a = 1", " SET b = 2"}},
		{sql: "SELECT ';'; LISTEN x", want: []string{"SELECT ';'", " LISTEN x"}},
		{sql: `SELECT "a;b"; RESET ALL`, want: []string{`SELECT "a;b"`, " RESET ALL"}},
		{sql: "SELECT $$a;b$$; SET x=1", want: []string{"SELECT $$a;b$$", " SET x=1"}},
		{sql: "SELECT $f$a;$$;b$f$; SET x=1", want: []string{"SELECT $f$a;$$;b$f$", " SET x=1"}},
		{sql: "SELECT 1 -- c;\n; SET x=1", want: []string{"SELECT 1 -- c;\n", " SET x=1"}},
		{sql: "SELECT /* ; */ 1; SET x=1", want: []string{"SELECT /* ; */ 1", " SET x=1"}},
		{sql: `SELECT E'\';'; SET x=1`, want: []string{`SELECT E'\';'`, " SET x=1"}},
		{sql: "SELECT 'it''s;'; SET x=1", want: []string{"SELECT 'it''s;'", " SET x=1"}},
		{sql: "SELECT $1; SET x=1", want: []string{"SELECT $1", " SET x=1"}},
	} {
		var got []string
		statements([]byte(tc.sql+"\x00"), func(b []byte) { got = append(got, string(b)) })
		if len(got) != len(tc.want) {
			t.Errorf("statements(%q) = %q, want %q", tc.sql, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("statements(%q) = %q, want %q", tc.sql, got, tc.want)
				break
			}
		}
	}
}
