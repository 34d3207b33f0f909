package main

import (
	"testing"
	"time"

	"github.com/pauseproxy/pauseproxy/internal/admin"
	"github.com/pauseproxy/pauseproxy/internal/failover"
)

// A role-change cycle reaches the event log (and so the metrics) with the
// hold reason that tells a planned switchover from any other change, and
// the addresses that tell a failover from a restart in place.
func TestRoleChangeEvents(t *testing.T) {
	a := &App{events: admin.NewEvents(0)}
	a.roleChanged(failover.Event{Database: "app", From: "a:5432", To: "b:5432", Held: time.Second, Outcome: "released", Reason: "switchover requested x", Planned: true})
	a.roleChanged(failover.Event{Database: "app", From: "b:5432", To: "b:5432", Held: 2 * time.Second, Outcome: "released", Reason: "server trouble"})
	evs := a.events.List()
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	for i, want := range []admin.Event{
		{Kind: admin.EventRoleChange, Database: "app", Reason: admin.HoldSwitchover, From: "a:5432", To: "b:5432", Duration: time.Second},
		{Kind: admin.EventRoleChange, Database: "app", Reason: "role-change", From: "b:5432", To: "b:5432", Duration: 2 * time.Second},
	} {
		got := evs[i]
		if got.Kind != want.Kind || got.Database != want.Database || got.Reason != want.Reason ||
			got.From != want.From || got.To != want.To || got.Duration != want.Duration || got.Outcome != "released" {
			t.Errorf("event %d = %+v, want %+v", i, got, want)
		}
	}
}
