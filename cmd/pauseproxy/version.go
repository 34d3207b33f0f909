package main

import (
	"runtime/debug"
	"sync"
)

// version is set at build time with -ldflags "-X main.version=..."
// (scripts/release.sh, the Dockerfile). Left empty, the binary names
// itself from its build information: see appVersion.
var version string

// devVersion is the version of an unstamped build: the next release.
const devVersion = "0.2.0-dev"

// appVersion is the version the binary reports (pauseproxy version, the
// log's first line, SHOW VERSION, the metrics, the Consul registration).
var appVersion = sync.OnceValue(func() string {
	info, _ := debug.ReadBuildInfo()
	return resolveVersion(version, info)
})

// resolveVersion is stamped when set. Otherwise it is the module version
// of a `go install ...@v0.2.0` build, or devVersion with the commit the
// go command recorded from the checkout (Go 1.18+ stamps vcs.revision and
// vcs.modified when building in a Git work tree) as semver build metadata:
// "0.2.0-dev+3f82809aaa1b.dirty".
func resolveVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return devVersion
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return devVersion
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := devVersion + "+" + rev
	if dirty {
		v += ".dirty"
	}
	return v
}
