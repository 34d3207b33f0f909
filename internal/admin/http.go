package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/config"
	"github.com/pauseproxy/pauseproxy/internal/router"
)

// HTTPOptions configure the HTTP endpoints on http_listen.
type HTTPOptions struct {
	Router *router.Router
	Pauser *Pauser
	// Readiness decides /readyz beyond the proxy's own state; nil means a
	// TargetProbe on Router.
	Readiness Readiness
	// Accepting reports whether the proxy accepts clients
	// (proxy.Server.Accepting); nil means it does.
	Accepting func() bool
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	Log     *slog.Logger
}

// readyTimeout bounds one /readyz answer; Kubernetes' default probe
// timeout is one second.
const readyTimeout = 900 * time.Millisecond

// NewHTTPHandler returns the handler of http_listen:
//
//	GET  /healthz   200 while the process runs
//	GET  /readyz    200 when the proxy accepts clients and can serve (see
//	                Readiness: at least one database is ready), else 503;
//	                the body lists the databases that are not ready
//	GET  /readyz?database=app  the same for one database (404 unknown)
//	GET  /metrics   Prometheus metrics (HTTPOptions.Metrics)
//	POST /pause     PAUSE: ?db=&timeout=&expire=&on_timeout=resume|cancel
//	POST /resume    RESUME: ?db=
//
// /pause and /resume need "Authorization: Bearer <http_token>"; without an
// http_token they are off (403).
func NewHTTPHandler(o HTTPOptions) http.Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Readiness == nil {
		o.Readiness = &TargetProbe{Router: o.Router}
	}
	h := &httpAPI{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", h.readyz)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	mux.HandleFunc("POST /pause", h.authorized(h.pause))
	mux.HandleFunc("POST /resume", h.authorized(h.resume))
	return mux
}

type httpAPI struct {
	o HTTPOptions
}

func (h *httpAPI) readyz(w http.ResponseWriter, req *http.Request) {
	var problems []string
	if h.o.Accepting != nil && !h.o.Accepting() {
		problems = append(problems, "the proxy does not accept clients (shutting down)")
	}
	if h.o.Router.Draining() {
		problems = append(problems, "the proxy is draining")
	}
	ok := len(problems) == 0
	var notes []string
	if ok {
		ctx, cancel := context.WithTimeout(req.Context(), readyTimeout)
		defer cancel()
		if db := req.URL.Query().Get("database"); db != "" {
			dr, can := h.o.Readiness.(DatabaseReadiness)
			if !can {
				dr = &TargetProbe{Router: h.o.Router}
			}
			var found bool
			ok, problems, found = dr.ReadyDatabase(ctx, db)
			if !found {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, "no such database: %s\n", db)
				return
			}
		} else {
			ok, problems = h.o.Readiness.Ready(ctx)
		}
		if ok {
			notes, problems = problems, nil
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintln(w, "ready")
	for _, n := range notes {
		// Databases that cannot serve while others do.
		fmt.Fprintln(w, "degraded: "+n)
	}
}

// authorized checks the bearer token in constant time.
func (h *httpAPI) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		token := h.o.Router.Config().Proxy.HTTPToken
		if token == "" {
			writeJSON(w, http.StatusForbidden, map[string]any{"error": "pause and resume over HTTP are disabled: set http_token"})
			return
		}
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pauseproxy"`)
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong bearer token"})
			return
		}
		next(w, req)
	}
}

func (h *httpAPI) pause(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	o := PauseOptions{Database: q.Get("db"), Action: q.Get("on_timeout"), By: "http " + req.RemoteAddr}
	if o.Action != "" && o.Action != config.PauseTimeoutResume && o.Action != config.PauseTimeoutCancel {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "on_timeout: want resume or cancel"})
		return
	}
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{{"timeout", &o.Timeout}, {"expire", &o.Expire}} {
		if v := q.Get(p.name); v != "" {
			d, err := parseDuration(token{text: v})
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": p.name + ": " + err.Error()})
				return
			}
			*p.dst = d
		}
	}
	if isAdminDB(o.Database) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "cannot pause admin db: " + o.Database})
		return
	}
	res, err := h.o.Pauser.Pause(req.Context(), o)
	if err != nil {
		writePauseError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"paused":         scopeName(o.Database),
		"waited_seconds": res.Waited.Seconds(),
		"cancelled":      res.Cancelled,
		"closed":         res.Closed,
	})
}

func (h *httpAPI) resume(w http.ResponseWriter, req *http.Request) {
	db := req.URL.Query().Get("db")
	was, err := h.o.Pauser.Resume(db, "http "+req.RemoteAddr)
	if err != nil {
		writePauseError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"resumed": scopeName(db), "was_paused": was})
}

// writePauseError maps a PAUSE/RESUME error to a status: 404 for an
// unknown database, 409 for a PAUSE that timed out or was interrupted.
func writePauseError(w http.ResponseWriter, err error) {
	var pe *PauseError
	if !errors.As(err, &pe) {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
		return
	}
	status := http.StatusConflict
	if pe.Code == "3D000" {
		status = http.StatusNotFound
	}
	writeJSON(w, status, map[string]any{"error": pe.Msg, "sqlstate": pe.Code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
