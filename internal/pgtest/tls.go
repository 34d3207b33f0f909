package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// CA is a throwaway certificate authority for tests: NewCA makes one, Issue
// signs certificates for the loopback names with it. Other test harnesses
// (patronitest) use it too.
type CA struct {
	// PEM is the CA's certificate, for a client's or server's trust store.
	PEM  []byte
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// certLifetime is how long test certificates are valid (from an hour ago,
// against clock skew).
const certLifetime = 30 * 24 * time.Hour

// NewCA returns a new CA called name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pgtest: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pgtest: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pgtest: parse CA certificate: %w", err)
	}
	return &CA{PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert: cert, key: key}, nil
}

// Issue returns a certificate for commonName and its private key (PKCS #8),
// both PEM, signed by ca. It is valid for 127.0.0.1, ::1 and localhost, and
// for both ends of a connection (server and client authentication), so the
// same certificate can serve a listener and present itself to another one,
// as Patroni's restapi.certfile does.
func (ca *CA) Issue(commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: create certificate for %s: %w", commonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeTLSFiles creates a throwaway CA and a server certificate signed by it,
// valid for 127.0.0.1, ::1 and localhost, so that clients can use
// sslmode=verify-full with sslrootcert=CAFile. The key is mode 0600 and owned
// by the server's user: PostgreSQL refuses a key readable by others ("Secure
// TCP/IP Connections with SSL", PostgreSQL 15 docs section 19.9.1).
func (c *Cluster) writeTLSFiles() error {
	ca, err := NewCA("pauseproxy pgtest CA")
	if err != nil {
		return err
	}
	cert, key, err := ca.Issue("localhost")
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.CAFile, ca.PEM, 0o644); err != nil {
		return fmt.Errorf("pgtest: write %s: %w", c.CAFile, err)
	}
	if err := writeFile(c.CertFile, cert, 0o644); err != nil {
		return err
	}
	return writeFile(c.KeyFile, key, 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		// crypto/rand does not fail on Linux (Go 1.24+ panics instead).
		panic(err)
	}
	return n
}
