package discovery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The real thing: a Patroni 3.0.2 cluster's dynamic configuration, read
// through its https REST API with client certificates (patronitest sets
// ttl 10, loop_wait 1, retry_timeout 3).
func TestFetchPatroniTimingsFromPatroni(t *testing.T) {
	c := etcdShared.get(t)
	api := PatroniAPI{CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := FetchPatroniTimings(ctx, append([]string{"https://127.0.0.1:1"}, c.PatroniURLs()...), api)
	if err != nil {
		t.Fatal(err)
	}
	want := PatroniTimings{TTL: time.Duration(c.TTL) * time.Second, LoopWait: time.Duration(c.LoopWait) * time.Second,
		RetryTimeout: time.Duration(c.RetryTimeout) * time.Second}
	if got.TTL != want.TTL || got.LoopWait != want.LoopWait || got.RetryTimeout != want.RetryTimeout {
		t.Fatalf("timings %+v, want %+v", got, want)
	}
	if d := got.UnplannedFailover(); d != want.TTL+want.LoopWait+FailoverMargin {
		t.Fatalf("UnplannedFailover() = %s", d)
	}
}

// What /config may hold besides plain numbers: strings left by
// patronictl edit-config, and keys left at Patroni's defaults.
func TestFetchPatroniTimingsValues(t *testing.T) {
	tests := []struct {
		name string
		body string
		want PatroniTimings
		bad  bool
	}{
		{name: "numbers", body: `{"ttl": 20, "loop_wait": 2, "retry_timeout": 5}`,
			want: PatroniTimings{TTL: 20 * time.Second, LoopWait: 2 * time.Second, RetryTimeout: 5 * time.Second}},
		{name: "strings", body: `{"ttl": "40", "loop_wait": "0.5", "retry_timeout": 10}`,
			want: PatroniTimings{TTL: 40 * time.Second, LoopWait: 500 * time.Millisecond, RetryTimeout: 10 * time.Second}},
		{name: "defaults", body: `{"postgresql": {}}`,
			want: PatroniTimings{TTL: 30 * time.Second, LoopWait: 10 * time.Second, RetryTimeout: 10 * time.Second}},
		{name: "garbage", body: `{"ttl": "soon"}`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/config" {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			got, err := FetchPatroniTimings(context.Background(), []string{srv.URL}, PatroniAPI{})
			if tt.bad {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.TTL != tt.want.TTL || got.LoopWait != tt.want.LoopWait || got.RetryTimeout != tt.want.RetryTimeout {
				t.Fatalf("timings %+v, want %+v", got, tt.want)
			}
		})
	}
}
