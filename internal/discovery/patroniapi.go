package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
)

// PatroniAPI says how to reach Patroni's REST API beyond its URLs. The zero
// value sends no credentials and verifies an https API against the
// system's roots.
type PatroniAPI struct {
	// Username and Password are sent with HTTP Basic authentication
	// (Patroni's restapi.authentication, which guards the unsafe
	// endpoints: POST /switchover, /restart, ...). Without them, the
	// userinfo of a configured URL (http://user:pass@host:8008) is sent
	// to every member, since the URLs that /cluster or Consul name carry
	// none. A URL's own userinfo wins for that URL.
	Username, Password string
	// CAFile is a PEM bundle verifying an https API's certificate
	// (Patroni's restapi.certfile signed by a private CA); "": the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are a client certificate, for Patroni's
	// restapi.verify_client.
	CertFile, KeyFile string
}

// TLSConfig returns the TLS settings for an https API, or nil when a's
// defaults (Go's) will do.
func (a PatroniAPI) TLSConfig() (*tls.Config, error) {
	if a.CAFile == "" && a.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("Patroni REST API CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("Patroni REST API CA: no PEM certificate in %s", a.CAFile)
		}
	}
	if a.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("Patroni REST API client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// PatroniHTTP sends requests to Patroni's REST API with a PatroniAPI's
// credentials and TLS settings: the Patroni source uses it, and so do the
// operator commands (package ops), which POST /switchover. No URL it
// returns or puts in an error carries credentials. Safe for concurrent
// use.
type PatroniHTTP struct {
	client *http.Client
	// byOrigin holds the credentials of each configured URL that had
	// userinfo, by scheme://host; def is the credentials for the others.
	byOrigin map[string]*url.Userinfo
	def      *url.Userinfo
	cert     bool // a client certificate is configured
	// certAsked is set when a server asked for a client certificate and
	// none was configured: with TLS 1.3 the refusal comes after the
	// handshake, and the client often sees only a reset or EOF.
	certAsked atomic.Bool
}

// NewPatroniHTTP returns a client of the REST API at urls through tr,
// whose TLSClientConfig it sets from api, and the base URLs of urls
// (BaseURL) without their credentials, in order. The error is about the
// TLS files.
func NewPatroniHTTP(api PatroniAPI, urls []string, tr *http.Transport) (*PatroniHTTP, []string, error) {
	h := &PatroniHTTP{client: &http.Client{Transport: tr}, byOrigin: map[string]*url.Userinfo{}, cert: api.CertFile != ""}
	if api.Username != "" {
		h.def = url.UserPassword(api.Username, api.Password)
	}
	var bases []string
	for _, raw := range urls {
		base := BaseURL(raw)
		if base == "" {
			continue
		}
		u, err := url.Parse(base)
		if err != nil || u.User == nil {
			bases = append(bases, base)
			continue
		}
		h.byOrigin[origin(u)] = u.User
		if h.def == nil {
			h.def = u.User
		}
		u.User = nil
		bases = append(bases, u.String())
	}
	tlsCfg, err := api.TLSConfig()
	if err != nil {
		return h, bases, err
	}
	if !h.cert {
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			h.certAsked.Store(true)
			return &tls.Certificate{}, nil
		}
	}
	tr.TLSClientConfig = tlsCfg
	return h, bases, nil
}

func origin(u *url.URL) string { return strings.ToLower(u.Scheme + "://" + u.Host) }

// Do sends req with credentials: the userinfo of req's URL (removed from
// the request, so that no message shows it), else that of the configured
// URL of the same scheme and host, else the default. A 401 or 403 answer
// comes back as an *AccessError (the body read and closed); another
// failure as an error that starts with the method and URL.
func (h *PatroniHTTP) Do(req *http.Request) (*http.Response, error) {
	creds := req.URL.User
	req.URL.User = nil
	if creds == nil {
		creds = h.byOrigin[origin(req.URL)]
	}
	if creds == nil {
		creds = h.def
	}
	if creds != nil {
		pw, _ := creds.Password()
		req.SetBasicAuth(creds.Username(), pw)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		// url.Error repeats the URL: keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		if oe, dial := errors.AsType[*net.OpError](err); h.certAsked.Load() && (!dial || oe.Op != "dial") {
			err = fmt.Errorf("%w (the server asked for a client certificate, as Patroni's restapi.verify_client does, and none is configured: set patroni_cert_file and patroni_key_file)", err)
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	ae := &AccessError{Method: req.Method, URL: req.URL.String(), Status: resp.StatusCode, Reason: strings.TrimSpace(string(body))}
	if creds != nil {
		ae.User = creds.Username()
	}
	ae.Cert = h.cert
	return nil, ae
}

// GetJSON GETs url and decodes Patroni's JSON answer into v. Patroni
// answers 200, or 503 with a body still worth reading (/patroni while
// PostgreSQL is down, /primary on a replica); any other status is an
// error, a refused one an *AccessError (see Do). The caller's ctx bounds
// the request.
func (h *PatroniHTTP) GetJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", RedactURL(url), err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("GET %s: %w", req.URL, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return fmt.Errorf("GET %s: status %s", req.URL, resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: status %s: decode: %w", req.URL, resp.Status, err)
	}
	return nil
}

// maxAnswer bounds an answer of Patroni's read into memory: /cluster of a
// large cluster is a few tens of KiB.
const maxAnswer = 4 << 20

// AccessError is Patroni's REST API refusing a request: 401 when the
// credentials are missing or wrong (restapi.authentication), 403 when a
// client certificate is missing (restapi.verify_client) or the address is
// not allowed (restapi.allowlist). Patroni 3.0.2 checks in that order:
// address, certificate, credentials (api.py, RestApiServer.check_access).
type AccessError struct {
	Method string
	URL    string // without credentials
	Status int    // 401 or 403
	// Reason is Patroni's answer: "no auth header received", "not
	// authenticated", "client certificate required", "Access is denied".
	Reason string
	// User is the user whose credentials were sent, "" when none were.
	User string
	// Cert is true when a client certificate was configured.
	Cert bool
}

func (e *AccessError) Error() string {
	var what string
	switch {
	case e.Status == http.StatusUnauthorized && e.User == "":
		what = "Patroni requires REST API credentials and none were sent: set patroni_username and patroni_password (Patroni's restapi.authentication)"
	case e.Status == http.StatusUnauthorized:
		what = fmt.Sprintf("Patroni refused the REST API credentials of user %q: check patroni_username and patroni_password against Patroni's restapi.authentication", e.User)
	case strings.Contains(e.Reason, "certificate") && !e.Cert:
		what = "Patroni requires a client certificate: set patroni_cert_file and patroni_key_file (Patroni's restapi.verify_client)"
	case strings.Contains(e.Reason, "certificate"):
		what = "Patroni refused the client certificate (patroni_cert_file): is it signed by Patroni's restapi.cafile?"
	default:
		what = "Patroni denied access from this address (Patroni's restapi.allowlist)"
	}
	reason := e.Reason
	if len(reason) > 200 {
		reason = reason[:200] + "..."
	}
	return fmt.Sprintf("%s %s: %s; Patroni answered %d %q", e.Method, e.URL, what, e.Status, reason)
}

// BaseURL turns a Patroni REST API URL, or a member's api_url (which ends
// in /patroni), into the base URL that paths are appended to; "" for
// blank. A URL without scheme is taken as http.
func BaseURL(u string) string {
	u = strings.TrimSpace(u)
	if u == "" {
		return ""
	}
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	u = strings.TrimRight(u, "/")
	u = strings.TrimSuffix(u, "/patroni")
	return strings.TrimRight(u, "/")
}

// RedactURL hides the credentials of a URL for messages
// (http://***@host:8008).
func RedactURL(u string) string {
	i := strings.Index(u, "://")
	at := strings.LastIndex(u, "@")
	if i < 0 || at < i {
		return u
	}
	return u[:i+3] + "***@" + u[at+1:]
}
