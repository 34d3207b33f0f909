package patronitest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/pauseproxy/pauseproxy/internal/pgtest"
)

// writeTLSFiles makes the cluster's CA, the REST API's certificate (one
// for every member, valid for 127.0.0.1; Patroni reads it as the postgres
// user) and a client certificate for the tests, and a client that trusts
// the CA and presents that certificate.
func (c *Cluster) writeTLSFiles() error {
	ca, err := pgtest.NewCA("pauseproxy patronitest CA")
	if err != nil {
		return err
	}
	c.CAFile = filepath.Join(c.Dir, "ca.crt")
	c.ClientCertFile = filepath.Join(c.Dir, "client.crt")
	c.ClientKeyFile = filepath.Join(c.Dir, "client.key")
	if err := os.WriteFile(c.CAFile, ca.PEM, 0o644); err != nil {
		return fmt.Errorf("patronitest: %w", err)
	}
	for _, f := range []struct {
		name, cert, key string
		owned           bool // by postgres, for Patroni
	}{
		{"patroni", filepath.Join(c.Dir, "restapi.crt"), filepath.Join(c.Dir, "restapi.key"), true},
		{"pauseproxy test client", c.ClientCertFile, c.ClientKeyFile, false},
	} {
		cert, key, err := ca.Issue(f.name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.cert, cert, 0o644); err != nil {
			return fmt.Errorf("patronitest: %w", err)
		}
		if err := os.WriteFile(f.key, key, 0o600); err != nil {
			return fmt.Errorf("patronitest: %w", err)
		}
		if f.owned {
			if err := os.Chown(f.key, c.uid, c.gid); err != nil {
				return fmt.Errorf("patronitest: %w", err)
			}
		}
	}
	pair, err := tls.LoadX509KeyPair(c.ClientCertFile, c.ClientKeyFile)
	if err != nil {
		return fmt.Errorf("patronitest: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	c.http = &http.Client{
		Timeout: httpClient.Timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}},
		},
	}
	return nil
}

// apiScheme is the REST API's scheme.
func (c *Cluster) apiScheme() string {
	if c.CAFile != "" {
		return "https"
	}
	return "http"
}

// HTTPClient is a client of the cluster's REST API: it trusts the
// cluster's CA and presents its client certificate (with Options.TLS). It
// sends no credentials by itself (see APIUsername).
func (c *Cluster) HTTPClient() *http.Client { return c.http }
