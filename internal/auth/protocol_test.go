package auth

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// rawClient is a hand-driven client, for what real clients never send.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialRaw(t *testing.T, port int, user string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	c.send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": user, "database": "d"},
	})
	return c
}

func (c *rawClient) send(msg pgproto3.FrontendMessage) {
	c.t.Helper()
	c.fe.Send(msg)
	if err := c.fe.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) receive() pgproto3.BackendMessage {
	c.t.Helper()
	msg, err := c.fe.Receive()
	if err != nil {
		c.t.Fatal(err)
	}
	return msg
}

// expectError reads until an ErrorResponse and checks its code.
func (c *rawClient) expectError(code string) {
	c.t.Helper()
	for {
		switch msg := c.receive().(type) {
		case *pgproto3.ErrorResponse:
			if msg.Code != code || msg.Severity != "FATAL" {
				c.t.Fatalf("got %s %s %q, want FATAL %s", msg.Severity, msg.Code, msg.Message, code)
			}
			return
		case *pgproto3.AuthenticationOk:
			c.t.Fatalf("authenticated, want error %s", code)
		}
	}
}

// startSCRAM reads the SASL request and sends the initial response.
func (c *rawClient) startSCRAM(mechanism, clientFirst string) {
	c.t.Helper()
	sasl, ok := c.receive().(*pgproto3.AuthenticationSASL)
	if !ok {
		c.t.Fatal("no AuthenticationSASL")
	}
	if strings.Join(sasl.AuthMechanisms, " ") != "SCRAM-SHA-256" {
		c.t.Fatalf("mechanisms %q, want only SCRAM-SHA-256 (never -PLUS)", sasl.AuthMechanisms)
	}
	c.send(&pgproto3.SASLInitialResponse{AuthMechanism: mechanism, Data: []byte(clientFirst)})
}

// serverFirst reads AuthenticationSASLContinue.
func (c *rawClient) serverFirst() string {
	c.t.Helper()
	cont, ok := c.receive().(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		c.t.Fatal("no AuthenticationSASLContinue")
	}
	return string(cont.Data)
}

// TestSCRAMGS2Y: a client able to bind channels that was not offered -PLUS
// sends the gs2 flag "y" (libpq does over TLS); it must log in, and the
// server signature in SASLFinal must verify.
func TestSCRAMGS2Y(t *testing.T) {
	srv := startServer(t, MethodSCRAM, map[string]Secret{"alice": ParseSecret(rightPassword)})
	sc, err := scram.SHA256.NewClient("", rightPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := sc.NewConversationAdvertisingChannelBinding()
	first, err := conv.Step("")
	if err != nil || !strings.HasPrefix(first, "y,,n=,") {
		t.Fatalf("client-first %q, %v", first, err)
	}
	c := dialRaw(t, srv.port(), "alice")
	c.startSCRAM("SCRAM-SHA-256", first)
	final, err := conv.Step(c.serverFirst())
	if err != nil {
		t.Fatal(err)
	}
	c.send(&pgproto3.SASLResponse{Data: []byte(final)})
	saslFinal, ok := c.receive().(*pgproto3.AuthenticationSASLFinal)
	if !ok {
		t.Fatal("no AuthenticationSASLFinal")
	}
	if _, err := conv.Step(string(saslFinal.Data)); err != nil || !conv.Valid() {
		t.Fatalf("server signature: %v", err)
	}
	if _, ok := c.receive().(*pgproto3.AuthenticationOk); !ok {
		t.Fatal("no AuthenticationOk")
	}
	if err := srv.result(t); err != nil {
		t.Fatal(err)
	}
}

// TestProtocolViolations: what no well-behaved client sends fails with
// PostgreSQL's SQLSTATE, and the client hears it.
func TestProtocolViolations(t *testing.T) {
	tests := []struct {
		name   string
		method Method
		drive  func(c *rawClient)
		code   string
	}{
		{
			name:   "query instead of password",
			method: MethodPlain,
			drive: func(c *rawClient) {
				c.receive()
				c.send(&pgproto3.Query{String: "select 1"})
			},
			code: CodeProtocolViolation,
		},
		{
			name:   "query instead of SASL response",
			method: MethodSCRAM,
			drive: func(c *rawClient) {
				c.receive()
				c.send(&pgproto3.Query{String: "select 1"})
			},
			code: CodeProtocolViolation,
		},
		{
			name:   "PLUS mechanism not offered",
			method: MethodSCRAM,
			drive:  func(c *rawClient) { c.startSCRAM("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc") },
			code:   CodeProtocolViolation,
		},
		{
			name:   "channel binding data without -PLUS",
			method: MethodSCRAM,
			drive:  func(c *rawClient) { c.startSCRAM("SCRAM-SHA-256", "p=tls-server-end-point,,n=,r=abc") },
			code:   CodeProtocolViolation,
		},
		{
			name:   "authorization identity",
			method: MethodSCRAM,
			drive:  func(c *rawClient) { c.startSCRAM("SCRAM-SHA-256", "n,a=bob,n=,r=abc") },
			code:   CodeFeatureNotSupported,
		},
		{
			name:   "garbage client-first",
			method: MethodSCRAM,
			drive:  func(c *rawClient) { c.startSCRAM("SCRAM-SHA-256", "hello") },
			code:   CodeProtocolViolation,
		},
		{
			name:   "nonce mismatch",
			method: MethodSCRAM,
			drive: func(c *rawClient) {
				c.startSCRAM("SCRAM-SHA-256", "n,,n=,r=abc")
				c.serverFirst()
				c.send(&pgproto3.SASLResponse{Data: []byte("c=biws,r=abcX,p=" + strings.Repeat("A", 43) + "=")})
			},
			code: CodeProtocolViolation,
		},
		{
			name:   "proof of the wrong length",
			method: MethodSCRAM,
			drive: func(c *rawClient) {
				c.startSCRAM("SCRAM-SHA-256", "n,,n=,r=abc")
				nonce, _, _ := strings.Cut(c.serverFirst(), ",")
				c.send(&pgproto3.SASLResponse{Data: []byte("c=biws," + nonce + ",p=AAAA")})
			},
			code: CodeProtocolViolation,
		},
		{
			name:   "wrong proof",
			method: MethodSCRAM,
			drive: func(c *rawClient) {
				c.startSCRAM("SCRAM-SHA-256", "n,,n=,r=abc")
				nonce, _, _ := strings.Cut(c.serverFirst(), ",")
				c.send(&pgproto3.SASLResponse{Data: []byte("c=biws," + nonce + ",p=" + strings.Repeat("A", 43) + "=")})
			},
			code: CodeInvalidPassword,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, tt.method, map[string]Secret{"alice": ParseSecret(rightPassword)})
			c := dialRaw(t, srv.port(), "alice")
			tt.drive(c)
			c.expectError(tt.code)
			var authErr *Error
			if err := srv.result(t); !errors.As(err, &authErr) || authErr.Code != tt.code {
				t.Fatalf("Authenticate = %v, want code %s", err, tt.code)
			}
		})
	}
}

// probe shows what a client can learn of a user without a password: the
// kind of request and, for SCRAM, the salt and iteration count. It hangs up
// there, which Authenticate must report as a transport error, not an *Error.
func probe(t *testing.T, srv *testServer, user string) string {
	t.Helper()
	c := dialRaw(t, srv.port(), user)
	var shown string
	switch msg := c.receive().(type) {
	case *pgproto3.AuthenticationCleartextPassword:
		shown = "cleartext"
	case *pgproto3.AuthenticationMD5Password:
		shown = "md5"
	case *pgproto3.AuthenticationSASL:
		c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=probe")})
		fields := strings.Split(c.serverFirst(), ",")
		if len(fields) != 3 {
			t.Fatalf("server-first %q", fields)
		}
		shown = fmt.Sprintf("SASL %s %s %s", msg.AuthMechanisms, fields[1], fields[2])
	default:
		t.Fatalf("unexpected %T", msg)
	}
	c.conn.Close()
	err := srv.result(t)
	var authErr *Error
	if errors.As(err, &authErr) || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		t.Fatalf("client hung up: Authenticate = %v, want a wrapped EOF", err)
	}
	return shown
}

// TestProbeUnknownUser: the first exchange messages for an unknown user are
// those for a real one. SCRAM salts of unknown users and of plain-password
// users come from the same derivation, so they match exactly and are stable
// across attempts.
func TestProbeUnknownUser(t *testing.T) {
	verifier := ParseSecret(makeVerifier(t, rightPassword, []byte("0123456789abcdef"), 4096))
	for _, method := range []Method{MethodPlain, MethodMD5, MethodSCRAM} {
		t.Run(string(method), func(t *testing.T) {
			srv := startServer(t, method, map[string]Secret{
				"alice": ParseSecret(rightPassword),
				"bob":   ParseSecret(md5Hash(rightPassword, "bob")),
			})
			alice := probe(t, srv, "alice")
			if again := probe(t, srv, "alice"); again != alice {
				t.Fatalf("alice's exchange changed between attempts: %q, %q", alice, again)
			}
			srv.setUsers(nil)
			if unknown := probe(t, srv, "alice"); unknown != alice {
				t.Fatalf("unknown alice %q, known alice %q", unknown, alice)
			}
			if method == MethodSCRAM {
				// bob has an MD5 hash, which cannot serve SCRAM: he gets
				// the mock exchange, which is the unknown user's.
				srv.setUsers(map[string]Secret{"bob": ParseSecret(md5Hash(rightPassword, "bob"))})
				known := probe(t, srv, "bob")
				srv.setUsers(nil)
				if unknown := probe(t, srv, "bob"); unknown != known {
					t.Fatalf("unknown bob %q, bob with MD5 hash %q", unknown, known)
				}
				// A verifier has its own salt; only the shape can match.
				srv.setUsers(map[string]Secret{"carol": verifier})
				withVerifier := probe(t, srv, "carol")
				if got, want := shape(withVerifier), shape(alice); got != want {
					t.Fatalf("verifier exchange %q, plain exchange %q", withVerifier, alice)
				}
			}
		})
	}
}

// shape hides the salt's value but keeps its length.
func shape(probed string) string {
	var b strings.Builder
	for _, f := range strings.Fields(probed) {
		if salt, ok := strings.CutPrefix(f, "s="); ok {
			f = fmt.Sprintf("s=<%d chars>", len(salt))
		}
		b.WriteString(f + " ")
	}
	return b.String()
}
