package router

import "testing"

func TestBeginMode(t *testing.T) {
	for _, tc := range []struct {
		sql           string
		begin, ro, rw bool
	}{
		{sql: "BEGIN READ ONLY", begin: true, ro: true},
		{sql: "begin read only", begin: true, ro: true},
		{sql: "  /* c */ BEGIN -- x\n TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE", begin: true, ro: true},
		{sql: "START TRANSACTION READ ONLY; SELECT 1", begin: true, ro: true},
		{sql: "start transaction read write", begin: true, rw: true},
		{sql: "BEGIN", begin: true},
		{sql: "BEGIN;", begin: true},
		{sql: "BEGIN WORK", begin: true},
		{sql: "SELECT 'BEGIN READ ONLY'"},
		{sql: "START"},
		{sql: "COMMIT"},
		{sql: ""},
		{sql: "BEGIN ISOLATION LEVEL READ COMMITTED", begin: true},
		{sql: "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", begin: true, ro: true},
	} {
		begin, ro, rw := beginMode([]byte(tc.sql + "\x00"))
		if begin != tc.begin || ro != tc.ro || rw != tc.rw {
			t.Errorf("beginMode(%q) = %v, %v, %v; want %v, %v, %v", tc.sql, begin, ro, rw, tc.begin, tc.ro, tc.rw)
		}
	}
}
