package config

import (
	"strings"
	"testing"
)

func TestOnSplitBrain(t *testing.T) {
	for _, tc := range []struct {
		name      string
		proxy, db string // lines of [proxy] and [databases.db]
		want      string // the database's
		problem   string
	}{
		{name: "default", want: SplitBrainHold},
		{name: "proxy follow", proxy: `on_split_brain = "follow"`, want: SplitBrainFollow},
		{name: "database overrides", proxy: `on_split_brain = "follow"`, db: `on_split_brain = "hold"`, want: SplitBrainHold},
		{name: "unknown", db: `on_split_brain = "guess"`, problem: `databases.db.on_split_brain: unknown value "guess" (want hold or follow)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadString(t, trust+tc.proxy+"\n[databases.db]\nhost = \"127.0.0.1\"\n"+tc.db+"\n")
			if tc.problem != "" {
				ps := problemsOf(t, err)
				if len(ps) != 1 || !strings.HasSuffix(ps[0], tc.problem) {
					t.Fatalf("problems %q, want one ending in %q", ps, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Databases["db"].OnSplitBrain; got != tc.want {
				t.Fatalf("OnSplitBrain = %q, want %q", got, tc.want)
			}
		})
	}
}
