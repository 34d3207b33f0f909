package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

const examplePath = "../../config.example.toml"

// The example must load as shipped, given the one environment variable it
// documents.
func TestExampleLoads(t *testing.T) {
	t.Setenv("PAUSEPROXY_AUTH_PASSWORD", "example")
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}
	for name, discovery := range map[string]string{"app": DiscoveryStatic, "orders": DiscoveryPatroni, "billing": DiscoveryConsul} {
		if d := c.Databases[name]; d == nil || d.Discovery != discovery {
			t.Errorf("database %s = %+v, want discovery %s", name, d, discovery)
		}
	}
	if len(c.Users) == 0 {
		t.Error("the example has no [users] table")
	}
}

// defaultLine is a commented-out default: "#key = value".
var defaultLine = regexp.MustCompile(`(?m)^#([a-z_]+ = .*)$`)

// Uncommenting every "#key = value" line must load and change nothing:
// the example's defaults are the real ones.
func TestExampleDefaultsAreTrue(t *testing.T) {
	t.Setenv("PAUSEPROXY_AUTH_PASSWORD", "example")
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	asIs, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	uncommented := defaultLine.ReplaceAllString(string(data), "$1")
	if uncommented == string(data) {
		t.Fatal("no commented-out defaults found")
	}
	c, err := Load(writeFile(t, t.TempDir(), "uncommented.toml", uncommented))
	if err != nil {
		t.Fatalf("with defaults uncommented: %v", err)
	}
	c.File = asIs.File
	if !reflect.DeepEqual(c, asIs) {
		t.Errorf("uncommenting the defaults changed the config:\n%+v\nwant\n%+v", c, asIs)
	}
}

// Every key of the schema is documented in the example.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var keys []string
	for _, f := range proxyFields {
		keys = append(keys, f.key)
	}
	for _, f := range databaseFields {
		keys = append(keys, f.key)
	}
	for _, f := range userFields {
		keys = append(keys, f.key)
	}
	for _, k := range keys {
		if !regexp.MustCompile(`(?m)(^#?|\s)` + k + ` = `).MatchString(text) {
			t.Errorf("config.example.toml does not document %s", k)
		}
	}
	for _, section := range []string{"[proxy]", "[databases.", "[users."} {
		if !strings.Contains(text, section) {
			t.Errorf("config.example.toml has no %s", section)
		}
	}
}
