package wire_test

import (
	"bytes"
	"io"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// The messages the proxy builds itself must decode with an independent
// implementation: pgproto3, which is what pgx clients run.

// decodeBackend decodes one backend message from b and requires that it
// uses all of b.
func decodeBackend(t *testing.T, b []byte) pgproto3.BackendMessage {
	t.Helper()
	r := bytes.NewReader(b)
	m, err := pgproto3.NewFrontend(r, io.Discard).Receive()
	if err != nil {
		t.Fatalf("pgproto3 cannot decode %q: %v", b, err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the message", r.Len())
	}
	return m
}

// decodeFrontend is decodeBackend for messages a client sends.
func decodeFrontend(t *testing.T, b []byte) pgproto3.FrontendMessage {
	t.Helper()
	r := bytes.NewReader(b)
	m, err := pgproto3.NewBackend(r, io.Discard).Receive()
	if err != nil {
		t.Fatalf("pgproto3 cannot decode %q: %v", b, err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the message", r.Len())
	}
	return m
}

func TestAppendErrorAndNotice(t *testing.T) {
	tests := []struct {
		name                string
		severity, code, msg string
	}{
		{name: "fatal", severity: wire.SeverityFatal, code: "08P01", msg: "invalid startup packet layout"},
		{name: "error", severity: wire.SeverityError, code: "57P03", msg: `database "app" is held too long`},
		{name: "empty message", severity: wire.SeverityError, code: "XX000", msg: ""},
		{name: "utf-8 and quotes", severity: "WARNING", code: "01000", msg: "naïve 'quoted' \"text\" ✓"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("keep")
			b := wire.AppendError(append([]byte{}, prefix...), tt.severity, tt.code, tt.msg)
			if !bytes.HasPrefix(b, prefix) {
				t.Fatal("AppendError overwrote dst")
			}
			got, ok := decodeBackend(t, b[len(prefix):]).(*pgproto3.ErrorResponse)
			if !ok {
				t.Fatalf("decoded as %T, want *pgproto3.ErrorResponse", got)
			}
			want := pgproto3.ErrorResponse{Severity: tt.severity, SeverityUnlocalized: tt.severity, Code: tt.code, Message: tt.msg}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("got %+v, want %+v", *got, want)
			}
			f, err := wire.ParseError(wire.Message(b[len(prefix):]))
			if err != nil || string(f.Severity) != tt.severity || string(f.Code) != tt.code || string(f.Message) != tt.msg {
				t.Fatalf("ParseError: %q %q %q, %v", f.Severity, f.Code, f.Message, err)
			}

			b = wire.AppendNotice(append([]byte{}, prefix...), tt.severity, tt.code, tt.msg)
			notice, ok := decodeBackend(t, b[len(prefix):]).(*pgproto3.NoticeResponse)
			if !ok {
				t.Fatalf("decoded as %T, want *pgproto3.NoticeResponse", notice)
			}
			if !reflect.DeepEqual(pgproto3.ErrorResponse(*notice), want) {
				t.Fatalf("notice: got %+v, want %+v", *notice, want)
			}
		})
	}
}

func TestAppendQuery(t *testing.T) {
	for _, sql := range []string{"", "SELECT 1", "SET application_name = 'naïve'; DISCARD ALL"} {
		b := wire.AppendQuery([]byte("x"), sql)
		got, ok := decodeFrontend(t, b[1:]).(*pgproto3.Query)
		if !ok || got.String != sql {
			t.Fatalf("AppendQuery(%q) decodes as %#v", sql, got)
		}
	}
}

func TestAppendOthers(t *testing.T) {
	if got, ok := decodeBackend(t, wire.AppendReadyForQuery(nil, wire.TxFailed)).(*pgproto3.ReadyForQuery); !ok || got.TxStatus != wire.TxFailed {
		t.Fatalf("ReadyForQuery decodes as %#v", got)
	}
	st, err := wire.ReadyForQueryStatus(wire.AppendReadyForQuery(nil, wire.TxActive))
	if err != nil || st != wire.TxActive {
		t.Fatalf("ReadyForQueryStatus: %q, %v", st, err)
	}
	if _, err := wire.ReadyForQueryStatus(wire.Message{wire.MsgReadyForQuery, 0, 0, 0, 4}); err == nil {
		t.Fatal("ReadyForQueryStatus of an empty body: want an error")
	}
	ps, ok := decodeBackend(t, wire.AppendParameterStatus(nil, "TimeZone", "Europe/Paris")).(*pgproto3.ParameterStatus)
	if !ok || ps.Name != "TimeZone" || ps.Value != "Europe/Paris" {
		t.Fatalf("ParameterStatus decodes as %#v", ps)
	}
}

func TestAppendStartupPackets(t *testing.T) {
	params := []wire.Param{{Name: "user", Value: "app"}, {Name: "database", Value: "appdb"}, {Name: "application_name", Value: ""}}
	b := wire.AppendStartup(nil, params)
	be := pgproto3.NewBackend(bytes.NewReader(b), io.Discard)
	m, err := be.ReceiveStartupMessage()
	if err != nil {
		t.Fatal(err)
	}
	sm, ok := m.(*pgproto3.StartupMessage)
	if !ok || sm.ProtocolVersion != wire.ProtocolVersion30 || len(sm.Parameters) != 3 || sm.Parameters["user"] != "app" || sm.Parameters["database"] != "appdb" {
		t.Fatalf("StartupMessage decodes as %#v", m)
	}
	s, err := wire.ReadStartup(bytes.NewReader(b))
	if err != nil || s.Kind != wire.StartupMessage || !reflect.DeepEqual(s.Params, params) {
		t.Fatalf("ReadStartup: %+v, %v", s, err)
	}
	if v, ok := s.Get("database"); !ok || v != "appdb" {
		t.Fatalf("Get(database) = %q, %v", v, ok)
	}
	if _, ok := s.Get("options"); ok {
		t.Fatal("Get of a parameter not sent")
	}

	b = wire.AppendCancelRequest(nil, 1234, []byte{0, 0, 0x16, 0x2e})
	m, err = pgproto3.NewBackend(bytes.NewReader(b), io.Discard).ReceiveStartupMessage()
	if cr, ok := m.(*pgproto3.CancelRequest); err != nil || !ok || cr.ProcessID != 1234 || !bytes.Equal(cr.SecretKey, []byte{0, 0, 0x16, 0x2e}) {
		t.Fatalf("CancelRequest decodes as %#v, %v", m, err)
	}
	s, err = wire.ReadStartup(bytes.NewReader(b))
	if err != nil || s.Kind != wire.CancelRequest || s.ProcessID != 1234 || s.SecretKey != 0x162e {
		t.Fatalf("ReadStartup of a cancel request: %+v, %v", s, err)
	}

	b = wire.AppendSSLRequest(nil)
	m, err = pgproto3.NewBackend(bytes.NewReader(b), io.Discard).ReceiveStartupMessage()
	if _, ok := m.(*pgproto3.SSLRequest); err != nil || !ok {
		t.Fatalf("SSLRequest decodes as %#v, %v", m, err)
	}
}

// Startup packets of protocol 3.2 clients (libpq 18, pgx): a newer minor
// version and _pq_ options are parsed for NegotiateProtocolVersion, and a
// CancelRequest with a long key is framed right.
func TestReadStartupProtocol32(t *testing.T) {
	b := wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: "app"}, {Name: "_pq_.foo", Value: "on"}, {Name: "database", Value: "appdb"}})
	b[7] = 2 // 3.2
	s, err := wire.ReadStartup(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != wire.StartupMessage || s.MinorVersion != 2 || len(s.Params) != 2 || len(s.ProtocolOptions) != 1 || s.ProtocolOptions[0].Name != "_pq_.foo" || !s.NeedsNegotiation() {
		t.Fatalf("got %+v", s)
	}
	m := wire.AppendNegotiateProtocolVersion(nil, wire.ProtocolVersion30, s.ProtocolOptions)
	var npv pgproto3.NegotiateProtocolVersion
	if m[0] != 'v' || npv.Decode(m[5:]) != nil || npv.NewestMinorProtocol != wire.ProtocolVersion30 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.foo" {
		t.Fatalf("NegotiateProtocolVersion %q decodes as %+v", m, npv)
	}

	key := bytes.Repeat([]byte{7}, 32)
	s, err = wire.ReadStartup(bytes.NewReader(wire.AppendCancelRequest(nil, 42, key)))
	if err != nil || s.Kind != wire.CancelRequest || s.ProcessID != 42 || !bytes.Equal(s.Key, key) || s.SecretKey != 0 {
		t.Fatalf("long-key cancel: %+v, %v", s, err)
	}

	if _, err := wire.ReadStartup(bytes.NewReader([]byte{'X', 0, 0, 0, 4})); err != wire.ErrTerminate {
		t.Fatalf("Terminate: %v, want ErrTerminate", err)
	}
}

func TestReadStartupErrors(t *testing.T) {
	tests := []struct {
		name     string
		data     []byte
		wantCode string // "" for an io error
	}{
		{name: "empty", data: nil},
		{name: "short length", data: []byte{0, 0}},
		{name: "length below 8", data: []byte{0, 0, 0, 7, 0, 3, 0, 0}, wantCode: "08P01"},
		{name: "length above the limit", data: []byte{0, 0, 0x27, 0x11}, wantCode: "08P01"},
		{name: "truncated body", data: []byte{0, 0, 0, 20, 0, 3, 0, 0}},
		{name: "protocol 2.0", data: []byte{0, 0, 0, 9, 0, 2, 0, 0, 0}, wantCode: "0A000"},
		{name: "protocol 4.0", data: []byte{0, 0, 0, 9, 0, 4, 0, 0, 0}, wantCode: "0A000"},
		{name: "Terminate cut short", data: []byte{'X', 0, 0, 0}},
		{name: "a typed message", data: []byte{'Q', 0, 0, 0, 5, 0}, wantCode: "08P01"},
		{name: "no terminator", data: append([]byte{0, 0, 0, 16, 0, 3, 0, 0}, "user\x00app"...), wantCode: "08P01"},
		{name: "name without value", data: append([]byte{0, 0, 0, 14, 0, 3, 0, 0}, "user\x00\x00"...), wantCode: "08P01"},
		{name: "bytes after the terminator", data: append([]byte{0, 0, 0, 20, 0, 3, 0, 0}, "user\x00app\x00\x00x\x00"...), wantCode: "08P01"},
		{name: "short cancel", data: []byte{0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1}, wantCode: "08P01"},
		{name: "cancel key over 256 bytes", data: append([]byte{0, 0, 0x01, 0x0d, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1}, make([]byte, 257)...), wantCode: "08P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := wire.ReadStartup(bytes.NewReader(tt.data))
			if err == nil {
				t.Fatalf("got %+v, want an error", s)
			}
			pe, ok := wire.IsProtocolError(err)
			switch {
			case tt.wantCode == "" && ok:
				t.Fatalf("got %v, want an io error", err)
			case tt.wantCode != "" && (!ok || pe.Code != tt.wantCode):
				t.Fatalf("got %v, want a ProtocolError %s", err, tt.wantCode)
			}
		})
	}
}

func TestStatementName(t *testing.T) {
	name, ok := wire.StatementName(wire.Message(append([]byte{'P', 0, 0, 0, 0}, "s1\x00SELECT 1\x00\x00\x00"...)))
	if !ok || string(name) != "s1" {
		t.Fatalf("got %q, %v", name, ok)
	}
	if _, ok := wire.StatementName(wire.Message([]byte{'P', 0, 0, 0, 6, 's', '1'})); ok {
		t.Fatal("a name without NUL: want !ok")
	}
}
