package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
)

// selfSigned returns a throwaway certificate, as the proxy would present.
func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// bindingExchange runs AuthenticateKeys with channel binding cb against a
// client that picks mechanism and runs conv; it returns the proxy's error.
func bindingExchange(t *testing.T, cb ChannelBinding, mechanism string, conv *scram.ClientConversation) (offered []string, err error) {
	t.Helper()
	proxySide, clientSide := net.Pipe()
	defer clientSide.Close()
	done := make(chan error, 1)
	go func() {
		defer proxySide.Close()
		be := pgproto3.NewBackend(proxySide, proxySide)
		_, err := AuthenticateKeys(be, MethodSCRAM, "alice", ParseSecret(rightPassword), true, cb)
		done <- err
	}()
	clientSide.SetDeadline(time.Now().Add(30 * time.Second))
	fe := pgproto3.NewFrontend(clientSide, clientSide)
	recv := func() pgproto3.BackendMessage {
		m, err := fe.Receive()
		if err != nil {
			return nil
		}
		return m
	}
	sasl, ok := recv().(*pgproto3.AuthenticationSASL)
	if !ok {
		t.Fatal("no AuthenticationSASL")
	}
	offered = sasl.AuthMechanisms
	first, err := conv.Step("")
	if err != nil {
		t.Fatal(err)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mechanism, Data: []byte(first)})
	fe.Flush()
	if cont, ok := recv().(*pgproto3.AuthenticationSASLContinue); ok {
		final, err := conv.Step(string(cont.Data))
		if err != nil {
			t.Fatal(err)
		}
		fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
		fe.Flush()
		if fin, ok := recv().(*pgproto3.AuthenticationSASLFinal); ok {
			if _, err := conv.Step(string(fin.Data)); err != nil || !conv.Valid() {
				t.Fatalf("server signature: %v", err)
			}
		}
	}
	clientSide.Close()
	return offered, <-done
}

func TestSCRAMChannelBinding(t *testing.T) {
	cert := selfSigned(t)
	cb, err := TLSServerEndPoint(cert)
	if err != nil {
		t.Fatal(err)
	}
	client := func() *scram.Client {
		c, err := scram.SHA256.NewClient("", rightPassword, "")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	same, _ := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
	other, _ := scram.NewTLSServerEndpointBinding(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{selfSigned(t)}})
	for _, tc := range []struct {
		name      string
		cb        ChannelBinding
		mechanism string
		conv      *scram.ClientConversation
		offered   string
		code      string // "" for a login
	}{
		{"bound over TLS", cb, "SCRAM-SHA-256-PLUS", client().NewConversationWithChannelBinding(same), "SCRAM-SHA-256-PLUS SCRAM-SHA-256", ""},
		{"plain SCRAM over TLS", cb, "SCRAM-SHA-256", client().NewConversation(), "SCRAM-SHA-256-PLUS SCRAM-SHA-256", ""},
		{"without TLS", ChannelBinding{}, "SCRAM-SHA-256", client().NewConversationAdvertisingChannelBinding(), "SCRAM-SHA-256", ""},
		{"downgrade", cb, "SCRAM-SHA-256", client().NewConversationAdvertisingChannelBinding(), "SCRAM-SHA-256-PLUS SCRAM-SHA-256", CodeInvalidAuthorization},
		{"another certificate", cb, "SCRAM-SHA-256-PLUS", client().NewConversationWithChannelBinding(other), "SCRAM-SHA-256-PLUS SCRAM-SHA-256", CodeProtocolViolation},
		{"PLUS without binding data", cb, "SCRAM-SHA-256-PLUS", client().NewConversation(), "SCRAM-SHA-256-PLUS SCRAM-SHA-256", CodeProtocolViolation},
		{"binding data without PLUS", cb, "SCRAM-SHA-256", client().NewConversationWithChannelBinding(same), "SCRAM-SHA-256-PLUS SCRAM-SHA-256", CodeProtocolViolation},
		{"PLUS not offered", ChannelBinding{}, "SCRAM-SHA-256-PLUS", client().NewConversationWithChannelBinding(same), "SCRAM-SHA-256", CodeProtocolViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offered, err := bindingExchange(t, tc.cb, tc.mechanism, tc.conv)
			if got := strings.Join(offered, " "); got != tc.offered {
				t.Errorf("offered %q, want %q", got, tc.offered)
			}
			var ae *Error
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("login failed: %v", err)
			case tc.code != "" && (!errors.As(err, &ae) || ae.Code != tc.code):
				t.Fatalf("got %v, want SQLSTATE %s", err, tc.code)
			}
		})
	}
}
