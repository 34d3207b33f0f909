package fidelity

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		msg  pgproto3.BackendMessage
		want string
	}{
		{name: "rfq", msg: &pgproto3.ReadyForQuery{TxStatus: 'E'}, want: "ReadyForQuery E"},
		{name: "bare", msg: &pgproto3.PortalSuspended{}, want: "PortalSuspended"},
		{name: "data row", msg: &pgproto3.DataRow{Values: [][]byte{[]byte("a\tb"), nil, {0, 1}}},
			want: `DataRow ["a\tb", null, "\x00\x01"]`},
		{name: "long value", msg: &pgproto3.CopyData{Data: []byte(strings.Repeat("z", 300))},
			want: `CopyData "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"... (300 bytes, sha256 `},
		{name: "notification without pid", msg: &pgproto3.NotificationResponse{PID: 4242, Channel: "c", Payload: "p"},
			want: `NotificationResponse channel="c" payload="p"`},
		{name: "error fields in order", msg: &pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012", Message: "division by zero",
			File: "int.c", Line: 841, Routine: "int4div", UnknownFields: map[byte]string{'Z': "z"}},
			want: `ErrorResponse S="ERROR" C="22012" M="division by zero" F="int.c" L="841" R="int4div" Z="z"`},
		{name: "notice", msg: &pgproto3.NoticeResponse{Severity: "NOTICE", Message: "hi", Position: 3},
			want: `NoticeResponse S="NOTICE" M="hi" P="3"`},
		{name: "row description", msg: &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
			{Name: []byte("id"), TableOID: 16386, TableAttributeNumber: 1, DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}},
			want: `RowDescription ["id" table=16386 attnum=1 type=23 size=4 mod=-1 format=0]`},
		{name: "backend key data", msg: &pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}, want: "BackendKeyData"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(tt.msg); !strings.HasPrefix(got, tt.want) {
				t.Errorf("describe = %s\nwant %s", got, tt.want)
			}
		})
	}
}

// FuzzParseScript checks that no script text makes the parser panic, and
// that what parses has steps that are each one kind of step.
func FuzzParseScript(f *testing.F) {
	scripts, err := loadScripts("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range scripts {
		var b strings.Builder
		for _, st := range s.steps {
			b.WriteString(st.text + "\n")
		}
		f.Add(b.String())
	}
	f.Add(`Bind params=["a", x"00", null] param_formats=[0, 1]`)
	f.Fuzz(func(t *testing.T, text string) {
		s, err := parseScript("fuzz", text)
		if err != nil {
			return
		}
		for _, st := range s.steps {
			kinds := 0
			if st.send != nil {
				kinds++
			}
			if st.conn != "" {
				kinds++
			}
			if st.expect != "" {
				kinds++
			}
			if kinds != 1 {
				t.Fatalf("line %d %q parsed into %+v", st.line, st.text, st)
			}
		}
	})
}
