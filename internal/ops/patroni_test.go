package ops

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckCluster(t *testing.T) {
	member := func(name, role, state string, lag any, extra ...string) clusterMember {
		m := clusterMember{Name: name, Role: role, State: state, Host: "10.0.0." + name[len(name)-1:], Port: 5432, Timeline: 2}
		if lag != nil {
			m.Lag, _ = json.Marshal(lag)
		}
		for _, e := range extra {
			switch e {
			case "nofailover":
				m.Tags = map[string]any{"nofailover": true}
			}
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		st        clusterStatus
		candidate string
		want      string // error substring; "" for success
		eligible  string
	}{
		{
			name:     "healthy",
			st:       clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 0), member("pg3", "replica", "streaming", 512)}},
			eligible: "pg2,pg3",
		},
		{
			name:      "candidate",
			st:        clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 0), member("pg3", "replica", "streaming", 512)}},
			candidate: "pg3", eligible: "pg3",
		},
		{
			name:      "unknown candidate",
			st:        clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 0)}},
			candidate: "pg9", want: `no member "pg9" (members: pg1, pg2)`,
		},
		{
			name:      "candidate is the leader",
			st:        clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 0)}},
			candidate: "pg1", want: "candidate pg1 is the leader already",
		},
		{
			name: "lagging, unknown lag, stopped, nofailover",
			st: clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 5<<20),
				member("pg3", "replica", "running", "unknown"), member("pg4", "replica", "stopped", 0), member("pg5", "replica", "running", 0, "nofailover")}},
			want: "no replica can take over: pg2 lags 5242880 bytes (more than 1048576); pg3's lag is unknown; pg4 is stopped; pg5 is tagged nofailover",
		},
		{
			name: "leader only",
			st:   clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil)}},
			want: "no replica to switch over to",
		},
		{
			name: "no leader",
			st:   clusterStatus{Members: []clusterMember{member("pg1", "replica", "running", 0)}},
			want: "Patroni names no leader",
		},
		{
			name: "leader not running",
			st:   clusterStatus{Members: []clusterMember{member("pg1", "leader", "starting", nil), member("pg2", "replica", "running", 0)}},
			want: "leader pg1 is starting, not running",
		},
		{
			name: "standby cluster",
			st:   clusterStatus{Members: []clusterMember{member("pg1", "standby_leader", "running", nil)}},
			want: "standby cluster",
		},
		{
			name:      "synchronous mode",
			st:        clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "sync_standby", "running", 0), member("pg3", "replica", "running", 0)}},
			candidate: "pg3", want: "pg3 is not a synchronous standby",
		},
		{
			name: "paused without candidate",
			st:   clusterStatus{Pause: true, Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 0)}},
			want: "maintenance mode",
		},
		{
			name:      "paused with candidate",
			st:        clusterStatus{Pause: true, Members: []clusterMember{member("pg1", "leader", "running", nil), member("pg2", "replica", "running", 0)}},
			candidate: "pg2", eligible: "pg2",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := checkCluster(&tc.st, tc.candidate, DefaultMaxLag)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(plan.eligible, ","); got != tc.eligible || plan.leader.Name != "pg1" {
				t.Fatalf("eligible %q leader %q", got, plan.leader.Name)
			}
		})
	}
	scheduled := clusterStatus{Members: []clusterMember{member("pg1", "leader", "running", nil)}}
	if err := json.Unmarshal([]byte(`{"members":[],"scheduled_switchover":{"at":"2026-01-01T00:00:00+00:00","from":"pg1"}}`), &scheduled); err != nil {
		t.Fatal(err)
	}
	if _, err := checkCluster(&scheduled, "", DefaultMaxLag); err == nil || !strings.Contains(err.Error(), "already scheduled") {
		t.Fatalf("scheduled: %v", err)
	}
}
