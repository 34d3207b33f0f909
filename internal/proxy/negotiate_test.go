package proxy_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pauseproxy/pauseproxy/internal/proxytest"
	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// startupPacket is a StartupMessage of protocol 3.minor.
func startupPacket(minor uint16, params ...wire.Param) []byte {
	b := wire.AppendStartup(nil, params)
	binary.BigEndian.PutUint16(b[6:], minor)
	return b
}

// passwordMessage is a PasswordMessage ('p') with a clear-text password.
func passwordMessage(pw string) []byte {
	m, start := wire.AppendHeader(nil, wire.MsgPassword)
	m = append(m, pw...)
	m = append(m, 0)
	return wire.FinishMessage(m, start)
}

// expectQuietClose reads c until it closes and fails if anything came.
func expectQuietClose(t *testing.T, c net.Conn) {
	t.Helper()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (after %q)", err, got)
	}
	if len(got) > 0 {
		if m := wire.Message(got); len(got) > 5 && m.Type() == wire.MsgErrorResponse {
			e, _ := wire.ParseError(m)
			t.Fatalf("got ErrorResponse %s %q, want a quiet close", e.Code, e.Message)
		}
		t.Fatalf("got %q, want a quiet close", got)
	}
}

// A client that gives up before it starts (node-postgres' connect() then
// end() sends Terminate first) or that connects and closes at once (a TCP
// health check) is closed quietly: no ErrorResponse, no line in the log.
// One that sends garbage is refused, and that refusal is logged once.
func TestQuietCloseBeforeStartup(t *testing.T) {
	var logBuf proxytest.SyncBuffer
	p := startProxy(t, proxyOptions{Opts: []proxytest.Option{
		proxytest.WithLog(slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))),
	}})

	t.Run("Terminate", func(t *testing.T) {
		c := dialRaw(t, p.Addr)
		c.Write([]byte{'X', 0, 0, 0, 4})
		expectQuietClose(t, c)
	})
	t.Run("nothing sent", func(t *testing.T) {
		for range 3 {
			c := dialRaw(t, p.Addr)
			c.(*net.TCPConn).CloseWrite()
			expectQuietClose(t, c)
		}
	})
	t.Run("a typed message that is not Terminate", func(t *testing.T) {
		// Still refused as PostgreSQL refuses it, with its message.
		c := dialRaw(t, p.Addr)
		c.Write(wire.AppendQuery(nil, "SELECT 1"))
		m, err := wire.NewReader(c, 0).ReadMessage()
		if err != nil || m.Type() != wire.MsgErrorResponse {
			t.Fatalf("got %q, %v; want an ErrorResponse", m, err)
		}
		if e, _ := wire.ParseError(m); string(e.Code) != "08P01" || !strings.HasPrefix(string(e.Message), "invalid startup packet length") {
			t.Fatalf("got %s %q", e.Code, e.Message)
		}
	})
	out := logBuf.String()
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], `msg="client login refused"`) || !strings.Contains(lines[0], "invalid startup packet length") {
		t.Fatalf("the proxy logged:\n%s\nwant one line, for the refused garbage", out)
	}
}

// Protocol negotiation as PostgreSQL 15 does it: a client asking for
// protocol 3.2 with a _pq_ option it made up gets NegotiateProtocolVersion
// (newest version 3.0, the option named), byte for byte what PostgreSQL sends,
// and its login goes on; protocol 4.0 is refused with PostgreSQL's message.
func TestProtocolNegotiation(t *testing.T) {
	p := startProxy(t, proxyOptions{AuthType: "plain"})
	startup := startupPacket(2,
		wire.Param{Name: "user", Value: "app"}, wire.Param{Name: "database", Value: "appdb"},
		wire.Param{Name: "_pq_.foo", Value: "bar"})

	// PostgreSQL's first answer, for comparison.
	pgc := dialRaw(t, pg.Addr())
	pgc.Write(startup)
	want, err := wire.NewReader(pgc, 0).ReadMessage()
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	want = bytes.Clone(want)

	c := dialRaw(t, p.Addr)
	c.Write(startup)
	rd := wire.NewReader(c, 0)
	m, err := rd.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m, want) {
		t.Fatalf("first message %q, PostgreSQL sends %q", m, want)
	}
	var npv pgproto3.NegotiateProtocolVersion
	if err := npv.Decode(m.Body()); err != nil || npv.NewestMinorProtocol != wire.ProtocolVersion30 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.foo" {
		t.Fatalf("NegotiateProtocolVersion %+v, %v", npv, err)
	}
	loginPlain(t, c, rd, "apppass")
	c.Write(wire.AppendQuery(nil, "SELECT 40 + 2"))
	if got := queryResult(t, rd); got != "42" {
		t.Fatalf("SELECT 40 + 2 = %q", got)
	}

	t.Run("protocol 4.0", func(t *testing.T) {
		b := wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: "app"}})
		binary.BigEndian.PutUint16(b[4:], 4)
		var msgs []string
		for _, addr := range []string{pg.Addr(), p.Addr} {
			c := dialRaw(t, addr)
			c.Write(b)
			m, err := wire.NewReader(c, 0).ReadMessage()
			if err != nil || m.Type() != wire.MsgErrorResponse {
				t.Fatalf("%s: got %q, %v; want an ErrorResponse", addr, m, err)
			}
			e, _ := wire.ParseError(m)
			msgs = append(msgs, string(e.Code)+" "+string(e.Message))
		}
		if msgs[0] != msgs[1] {
			t.Fatalf("PostgreSQL says %q, the proxy %q", msgs[0], msgs[1])
		}
	})

	t.Run("CancelRequest with a 32-byte key", func(t *testing.T) {
		// Protocol 3.2 allows keys up to 256 bytes: framed right, matched
		// against nothing, closed quietly as PostgreSQL does.
		c := dialRaw(t, p.Addr)
		c.Write(wire.AppendCancelRequest(nil, 1234, bytes.Repeat([]byte{0xab}, 32)))
		expectQuietClose(t, c)
	})
}

// loginPlain answers a clear-text password request and reads up to the
// first ReadyForQuery.
func loginPlain(t *testing.T, c net.Conn, rd *wire.Reader, password string) {
	t.Helper()
	for {
		m, err := rd.ReadMessage()
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		switch m.Type() {
		case wire.MsgAuthentication:
			switch binary.BigEndian.Uint32(m.Body()) {
			case 0:
			case 3:
				c.Write(passwordMessage(password))
			default:
				t.Fatalf("authentication request %q", m)
			}
		case wire.MsgErrorResponse:
			e, _ := wire.ParseError(m)
			t.Fatalf("login: %s %s", e.Code, e.Message)
		case wire.MsgReadyForQuery:
			return
		}
	}
}

// queryResult reads a simple query's answer up to ReadyForQuery and
// returns its first column of its first row.
func queryResult(t *testing.T, rd *wire.Reader) string {
	t.Helper()
	var got string
	for {
		m, err := rd.ReadMessage()
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		switch m.Type() {
		case wire.MsgErrorResponse:
			e, _ := wire.ParseError(m)
			t.Fatalf("query: %s %s", e.Code, e.Message)
		case wire.MsgDataRow:
			var dr pgproto3.DataRow
			if err := dr.Decode(m.Body()); err != nil || len(dr.Values) == 0 {
				t.Fatalf("DataRow %q: %v", m, err)
			}
			got = string(dr.Values[0])
		case wire.MsgReadyForQuery:
			return got
		}
	}
}
