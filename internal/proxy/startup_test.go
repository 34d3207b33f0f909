package proxy_test

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/wire"
)

// Bytes a client sends before the proxy has answered: a password sent
// ahead with the StartupMessage is read (the startup packets go through a
// buffer), and clear-text bytes after an SSLRequest that the proxy would
// answer with TLS are refused as PostgreSQL refuses them.
func TestStartupPipelined(t *testing.T) {
	startup := wire.AppendStartup(nil, []wire.Param{{Name: "user", Value: "app"}, {Name: "database", Value: "appdb"}})
	sslRequest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), 80877103)

	t.Run("password sent ahead", func(t *testing.T) {
		p := startProxy(t, proxyOptions{AuthType: "plain"})
		password, _ := wire.AppendHeader(nil, wire.MsgPassword)
		password = append(password, "apppass\x00"...)
		binary.BigEndian.PutUint32(password[1:], uint32(len(password)-1))
		c := dialRaw(t, p.Addr)
		// One write: the proxy reads the password before it asks.
		c.Write(append(append(append([]byte{}, startup...), password...), wire.AppendQuery(nil, "SELECT 41 + 1")...))
		rd := wire.NewReader(c, 0)
		var got []byte
		for {
			m, err := rd.ReadMessage()
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			got = append(got, m.Type())
			switch m.Type() {
			case wire.MsgErrorResponse:
				e, _ := wire.ParseError(m)
				t.Fatalf("error: %s %s", e.Code, e.Message)
			case wire.MsgDataRow:
				if string(m.Body()[6:]) != "42" {
					t.Fatalf("DataRow %q, want 42", m.Body())
				}
				return
			}
		}
	})

	t.Run("clear text after SSLRequest", func(t *testing.T) {
		cert, key := proxyCert(t)
		p := startProxy(t, proxyOptions{
			Extra: "client_tls_sslmode = \"allow\"\nclient_tls_cert_file = \"" + cert + "\"\nclient_tls_key_file = \"" + key + "\"\n",
		})
		c := dialRaw(t, p.Addr)
		c.Write(append(append([]byte{}, sslRequest...), startup...))
		m, err := wire.NewReader(c, 0).ReadMessage()
		if err != nil || m.Type() != wire.MsgErrorResponse {
			t.Fatalf("want an ErrorResponse, got %q, %v", m, err)
		}
		e, _ := wire.ParseError(m)
		if string(e.Code) != "08P01" || string(e.Message) != "received unencrypted data after SSL request" {
			t.Fatalf("got %s %q", e.Code, e.Message)
		}
	})
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}
