package config

import (
	"strings"
	"testing"
	"time"
)

func TestTargetSessionAttrs(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       string
	}{
		{name: "static default", toml: "host = \"h\"", want: TargetReadWrite},
		{name: "patroni default", toml: "discovery = \"patroni\"\npatroni_urls = [\"http://h:8008\"]", want: TargetReadWrite},
		{name: "read_only static", toml: "host = \"h\"\nread_only = true", want: TargetAny},
		{name: "read_only patroni", toml: "discovery = \"patroni\"\npatroni_urls = [\"http://h:8008\"]\nread_only = true", want: TargetPreferStandby},
		{name: "explicit", toml: "host = \"h\"\ntarget_session_attrs = \"standby\"", want: TargetStandby},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadString(t, "[proxy]\nauth_type = \"trust\"\n[databases.app]\n"+tc.toml+"\n")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Databases["app"].TargetSessionAttrs; got != tc.want {
				t.Errorf("target_session_attrs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadsProblems(t *testing.T) {
	_, err := loadString(t, `
[databases.a]
target_session_attrs = "readwrite"
[databases.b]
read_only = true
target_session_attrs = "primary"
[databases.c]
target_session_attrs = "read-only"
read_only_routing = "replica"
[databases.d]
max_replica_lag = "lots"
`)
	got := strings.Join(problemsOf(t, err), "\n")
	for _, want := range []string{
		"databases.a.target_session_attrs", "databases.b.read_only", "databases.c.read_only_routing", "databases.d.max_replica_lag",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no problem about %s in:\n%s", want, got)
		}
	}
}

func TestMaxReplicaLag(t *testing.T) {
	for _, tc := range []struct {
		in    string
		bytes int64
		dur   time.Duration
	}{
		{in: "1048576", bytes: 1 << 20},
		{in: "16MB", bytes: 16 << 20},
		{in: "64kB", bytes: 64 << 10},
		{in: "1GB", bytes: 1 << 30},
		{in: "10s", dur: 10 * time.Second},
	} {
		n, d, ok := parseReplicaLag(tc.in)
		if !ok || n != tc.bytes || d != tc.dur {
			t.Errorf("parseReplicaLag(%q) = %d, %s, %v; want %d, %s", tc.in, n, d, ok, tc.bytes, tc.dur)
		}
	}
	for _, bad := range []string{"", "-1", "0", "1TB", "s"} {
		if _, _, ok := parseReplicaLag(bad); ok {
			t.Errorf("parseReplicaLag(%q) accepted", bad)
		}
	}
}

// An ini entry without target_session_attrs gets any (PgBouncer checks
// nothing); one with it keeps it; convert writes both.
func TestINITargetSessionAttrs(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "pgbouncer.ini", `[pgbouncer]
listen_port = 6432
auth_type = trust
[databases]
app = host=10.0.0.1
app_ro = host=10.0.0.2 target_session_attrs=read-only
`)
	c, err := LoadPgBouncerINI(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Databases["app"].TargetSessionAttrs; got != TargetAny {
		t.Errorf("app: %q, want any", got)
	}
	if got := c.Databases["app_ro"].TargetSessionAttrs; got != TargetReadOnly {
		t.Errorf("app_ro: %q, want read-only", got)
	}
	out := roundTrip(t, c)
	for _, want := range []string{`target_session_attrs = "any"`, `target_session_attrs = "read-only"`} {
		if !strings.Contains(out, want) {
			t.Errorf("convert lost %s:\n%s", want, out)
		}
	}
}

func TestMaxReplicaLagWarnings(t *testing.T) {
	c, err := loadString(t, `[proxy]
auth_type = "trust"
[databases.rw]
max_replica_lag = "1MB"
[databases.static_bytes]
target_session_attrs = "read-only"
max_replica_lag = "1MB"
[databases.patroni_time]
discovery = "patroni"
patroni_urls = ["http://h:8008"]
target_session_attrs = "read-only"
max_replica_lag = "10s"
[databases.ok]
discovery = "patroni"
patroni_urls = ["http://h:8008"]
read_only_routing = "replica"
max_replica_lag = "16MB"
`)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"databases.rw.max_replica_lag", "databases.static_bytes.max_replica_lag", "databases.patroni_time.max_replica_lag"} {
		if !strings.Contains(got, want) {
			t.Errorf("no warning about %s in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "databases.ok.") {
		t.Errorf("warning about a sound setting:\n%s", got)
	}
	if n := c.Databases["ok"].MaxReplicaLagBytes; n != 16<<20 {
		t.Errorf("MaxReplicaLagBytes = %d", n)
	}
}
