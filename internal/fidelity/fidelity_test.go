package fidelity

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// runTimeout bounds one run of a script, including its logins.
const runTimeout = time.Minute

// TestFidelity runs every script in testdata against PostgreSQL directly
// and through the proxy in each pooling mode the script allows, and
// compares the transcripts.
func TestFidelity(t *testing.T) {
	scripts, err := loadScripts("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, s := range scripts {
		t.Run(s.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
			defer cancel()
			want, err := runScript(ctx, s, target{dsn: pg.DSN("app", "apppass", "appdb")})
			if err != nil {
				t.Fatalf("the script fails directly against PostgreSQL: %v\ntranscript so far:\n%s", err, strings.Join(want, "\n"))
			}
			t.Logf("direct transcript:\n%s", strings.Join(want, "\n"))
			for _, mode := range s.modes {
				t.Run(mode, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
					defer cancel()
					got, err := runScript(ctx, s, proxyTarget(t, ctx, mode))
					if err == nil && slices.Equal(want, got) {
						return
					}
					var b strings.Builder
					b.WriteString("through the proxy in " + mode + " mode, the exchange differs from PostgreSQL's")
					if s.about != "" {
						b.WriteString("\nabout this case:\n  " + strings.ReplaceAll(s.about, "\n", "\n  "))
					}
					if err != nil {
						b.WriteString("\nthe run stopped: " + err.Error())
					}
					b.WriteString("\ndiff (-direct +proxy):\n")
					b.WriteString(diff(want, got))
					t.Error(b.String())
				})
			}
		})
	}
}

// proxyTarget starts a proxy in mode for one run; in transaction mode the
// run rotates server connections between transactions.
func proxyTarget(t *testing.T, ctx context.Context, mode string) target {
	p := startProxy(t, mode)
	tgt := target{dsn: p.DSN()}
	if mode == "transaction" {
		db, ok := p.Router.Database("appdb")
		if !ok {
			t.Fatal("proxy has no database appdb")
		}
		blocker, err := pgconn.Connect(ctx, p.DSN())
		if err != nil {
			t.Fatalf("connect the rotation blocker: %v", err)
		}
		t.Cleanup(func() { blocker.Close(context.Background()) })
		tgt.rot = &rotator{db: db, blocker: blocker}
	}
	return tgt
}

// TestStartupParameters checks the login: the proxy must report every
// parameter the server reports, with the same value, as a client that
// connects directly would see them (PostgreSQL docs 55.2.7: drivers rely on
// server_version, client_encoding, standard_conforming_strings, ...),
// including the ones the client sets in its startup packet.
func TestStartupParameters(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		params string // URL query parameters; pgconn sends unknown ones as startup parameters
	}{
		{name: "defaults"},
		{name: "reported params", params: "application_name=fidelity&TimeZone=Asia/Tokyo&DateStyle=SQL,%20DMY&IntervalStyle=iso_8601&client_encoding=LATIN1"},
		{name: "options", params: "options=-c%20TimeZone%3DEurope/Paris%20-c%20application_name%3Dvia_options"},
		// Any settable parameter logs in, as on PostgreSQL (unreported:
		// only the login itself and the reported ones are compared).
		{name: "settable params", params: "search_path=fid&client_min_messages=warning&statement_timeout=5s&myapp.tenant=t1&enable_seqscan=off"},
	}
	proxies := map[string]*testProxy{}
	for _, mode := range allModes {
		proxies[mode] = startProxy(t, mode)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			direct := loginParams(t, ctx, withParams(pg.DSN("app", "apppass", "appdb"), tt.params))
			t.Logf("PostgreSQL reports %v", direct)
			for _, name := range []string{"server_version", "server_encoding", "client_encoding", "DateStyle",
				"TimeZone", "integer_datetimes", "standard_conforming_strings"} {
				if _, ok := direct[name]; !ok {
					t.Fatalf("PostgreSQL did not report %s; got %v", name, direct)
				}
			}
			for _, mode := range allModes {
				got := loginParams(t, ctx, withParams(proxies[mode].DSN(), tt.params))
				for _, name := range sortedNames(direct) {
					v, ok := got[name]
					switch {
					case !ok:
						t.Errorf("%s mode: ParameterStatus %s: the server reports %q, the proxy does not report it", mode, name, direct[name])
					case v != direct[name]:
						t.Errorf("%s mode: ParameterStatus %s: the server reports %q, the proxy %q", mode, name, direct[name], v)
					}
				}
				for _, name := range sortedNames(got) {
					if _, ok := direct[name]; !ok {
						t.Errorf("%s mode: the proxy reports %s=%q, which the server does not", mode, name, got[name])
					}
				}
			}
		})
	}
}

// withParams appends URL query parameters to a postgres:// URL that
// already has some.
func withParams(dsn, params string) string {
	if params == "" {
		return dsn
	}
	return dsn + "&" + params
}

// loginParams logs in and returns the ParameterStatus values received
// before ReadyForQuery.
func loginParams(t *testing.T, ctx context.Context, dsn string) map[string]string {
	t.Helper()
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	hj, err := hijack(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	hj.Conn.Close()
	if hj.PID == 0 {
		t.Errorf("no BackendKeyData at login (dsn %s)", dsn)
	}
	return hj.ParameterStatuses
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// diff is a line diff of two transcripts (longest common subsequence),
// with "-" for lines only in a, "+" for lines only in b.
func diff(a, b []string) string {
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out.WriteString("  " + a[i] + "\n")
			i++
			j++
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("- " + a[i] + "\n")
			i++
		default:
			out.WriteString("+ " + b[j] + "\n")
			j++
		}
	}
	return out.String()
}
