package wire_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// The seed corpora of these targets are in testdata/fuzz/<FuzzName>/; run
// one with: go test -run XXX -fuzz FuzzReadStartup -fuzztime 30s ./internal/wire/

// checkStartup checks what ReadStartup or ParseStartup returned for body
// (the packet after its length word).
func checkStartup(t *testing.T, body []byte, s *wire.Startup, err error) {
	t.Helper()
	if err != nil {
		if s != nil {
			t.Fatalf("error %v with a non-nil Startup", err)
		}
		pe, ok := wire.IsProtocolError(err)
		if !ok {
			t.Fatalf("error %T %v, want *ProtocolError", err, err)
		}
		if pe.Code != "08P01" && pe.Code != "0A000" {
			t.Fatalf("ProtocolError code %q, want 08P01 or 0A000", pe.Code)
		}
		return
	}
	code := binary.BigEndian.Uint32(body)
	switch s.Kind {
	case wire.StartupMessage:
		if code>>16 != 3 || uint16(code) != s.MinorVersion {
			t.Fatalf("StartupMessage 3.%d from code %d", s.MinorVersion, code)
		}
		for _, p := range s.Params {
			if p.Name == "" || strings.IndexByte(p.Name, 0) >= 0 || strings.IndexByte(p.Value, 0) >= 0 {
				t.Fatalf("bad parameter %q", p)
			}
			if strings.HasPrefix(p.Name, "_pq_.") {
				t.Fatalf("protocol option %q among the parameters", p.Name)
			}
		}
		for _, p := range s.ProtocolOptions {
			if !strings.HasPrefix(p.Name, "_pq_.") {
				t.Fatalf("parameter %q among the protocol options", p.Name)
			}
		}
		if code == wire.ProtocolVersion30 && len(s.ProtocolOptions) == 0 {
			// The layout is strict (PostgreSQL's ProcessStartupPacket):
			// encoding the parameters again gives the same bytes.
			again := wire.AppendStartup(nil, s.Params)
			if !bytes.Equal(again[4:], body) {
				t.Fatalf("parameters %q encode to %q, want %q", s.Params, again[4:], body)
			}
		}
		if s.NeedsNegotiation() != (code != wire.ProtocolVersion30 || len(s.ProtocolOptions) > 0) {
			t.Fatalf("NeedsNegotiation %v for 3.%d with %d options", s.NeedsNegotiation(), s.MinorVersion, len(s.ProtocolOptions))
		}
	case wire.CancelRequest:
		if code != wire.CodeCancel || len(body) < 12 || len(body) > 8+wire.MaxCancelKeyLen {
			t.Fatalf("CancelRequest from code %d, %d bytes", code, len(body))
		}
		again := wire.AppendCancelRequest(nil, s.ProcessID, s.Key)
		if !bytes.Equal(again[4:], body) {
			t.Fatalf("cancel request encodes to %q, want %q", again[4:], body)
		}
		if (len(s.Key) == 4) != (s.SecretKey != 0 || bytes.Equal(s.Key, []byte{0, 0, 0, 0})) {
			t.Fatalf("SecretKey %d for key %q", s.SecretKey, s.Key)
		}
	case wire.SSLRequest:
		if code != wire.CodeSSLRequest {
			t.Fatalf("SSLRequest from code %d", code)
		}
	case wire.GSSENCRequest:
		if code != wire.CodeGSSENCRequest {
			t.Fatalf("GSSENCRequest from code %d", code)
		}
	default:
		t.Fatalf("unknown kind %d", s.Kind)
	}
}

// FuzzReadStartup reads one startup packet from arbitrary bytes: it must
// not panic, must fail only with a *ProtocolError or an io error, and must
// not read (or allocate) past MaxStartupSize.
func FuzzReadStartup(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		s, err := wire.ReadStartup(r)
		consumed := len(data) - r.Len()
		if consumed > wire.MaxStartupSize {
			t.Fatalf("read %d bytes, more than MaxStartupSize", consumed)
		}
		if err == wire.ErrTerminate {
			if !bytes.HasPrefix(data, []byte{'X', 0, 0, 0, 4}) || consumed != 5 {
				t.Fatalf("ErrTerminate after %q", data[:consumed])
			}
			return
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if s != nil {
				t.Fatal("io error with a non-nil Startup")
			}
			if len(data) >= 4 {
				l := int(binary.BigEndian.Uint32(data))
				if l >= 8 && l <= wire.MaxStartupSize && len(data) >= l {
					t.Fatalf("%v although the %d-byte packet is complete", err, l)
				}
			}
			return
		}
		if err != nil {
			checkStartup(t, nil, s, err)
			return
		}
		if l := int(binary.BigEndian.Uint32(data)); consumed != l {
			t.Fatalf("consumed %d bytes of a %d-byte packet", consumed, l)
		}
		checkStartup(t, data[4:consumed], s, nil)
	})
}

// FuzzParseStartup parses arbitrary packet bodies.
func FuzzParseStartup(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := wire.ParseStartup(body)
		if len(body) < 4 {
			if err == nil {
				t.Fatalf("a Startup from %d bytes", len(body))
			}
		}
		checkStartup(t, body, s, err)
	})
}

// withHeader makes a message of type typ around body.
func withHeader(typ byte, body []byte) wire.Message {
	m := make([]byte, 5, 5+len(body))
	m[0] = typ
	binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
	return append(m, body...)
}

// FuzzParseError parses arbitrary ErrorResponse bodies and compares with
// pgproto3's decoder; it also round-trips AppendError's output.
func FuzzParseError(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, severity, code, msg string) {
		m := withHeader(wire.MsgErrorResponse, body)
		got, err := wire.ParseError(m)
		for _, field := range [][]byte{got.Severity, got.Code, got.Message} {
			if bytes.IndexByte(field, 0) >= 0 {
				t.Fatalf("field %q holds a NUL", field)
			}
		}
		var want pgproto3.ErrorResponse
		if want.Decode(body) == nil {
			if err != nil {
				t.Fatalf("pgproto3 decodes %q, ParseError fails: %v", body, err)
			}
			if string(got.Code) != want.Code || string(got.Message) != want.Message {
				t.Fatalf("ParseError %q/%q, pgproto3 %q/%q", got.Code, got.Message, want.Code, want.Message)
			}
			if want.SeverityUnlocalized != "" && string(got.Severity) != want.SeverityUnlocalized {
				t.Fatalf("severity %q, want the non-localised %q", got.Severity, want.SeverityUnlocalized)
			}
		}

		if strings.ContainsRune(severity+code+msg, 0) {
			return
		}
		m = wire.AppendError(nil, severity, code, msg)
		got, err = wire.ParseError(m)
		if err != nil || string(got.Severity) != severity || string(got.Code) != code || string(got.Message) != msg {
			t.Fatalf("AppendError(%q, %q, %q) parses as %q/%q/%q, %v", severity, code, msg, got.Severity, got.Code, got.Message, err)
		}
		if int(binary.BigEndian.Uint32(m[1:])) != len(m)-1 {
			t.Fatal("AppendError: wrong length")
		}
	})
}

// FuzzParameterStatus splits arbitrary ParameterStatus bodies and compares
// with pgproto3's decoder; it also round-trips AppendParameterStatus.
func FuzzParameterStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, name, value string) {
		n, v, err := wire.ParameterStatus(withHeader(wire.MsgParameterStatus, body))
		var want pgproto3.ParameterStatus
		if werr := want.Decode(body); (werr == nil) != (err == nil) {
			t.Fatalf("ParameterStatus error %v, pgproto3 error %v", err, werr)
		}
		if err == nil && (string(n) != want.Name || string(v) != want.Value) {
			t.Fatalf("ParameterStatus %q=%q, pgproto3 %q=%q", n, v, want.Name, want.Value)
		}

		if strings.ContainsRune(name+value, 0) {
			return
		}
		m := wire.AppendParameterStatus(nil, name, value)
		n, v, err = wire.ParameterStatus(m)
		if err != nil || string(n) != name || string(v) != value {
			t.Fatalf("AppendParameterStatus(%q, %q) parses as %q=%q, %v", name, value, n, v, err)
		}
	})
}
