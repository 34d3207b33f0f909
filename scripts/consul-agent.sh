#!/usr/bin/env bash
# consul-agent.sh prints the path of a Consul agent binary for the discovery
# tests (exported as PAUSEPROXY_CONSUL by .ci/run).
#
# Debian 12 has no consul package and nothing may be downloaded except
# through the Go module proxy, so the agent is built from its Go module once
# and cached in ${XDG_CACHE_HOME:-$HOME/.cache}/pauseproxy/consul-<version>.
# A cold build takes a few minutes; later runs only check the cached binary.
# Build output goes to stderr; stdout is only the path.
set -euo pipefail

version=1.14.11
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pauseproxy"
out="$cache/consul-$version"

cached_ok() {
	local v
	# Not a pipe into head/grep -q: with pipefail, consul dying of SIGPIPE
	# would count as a failure.
	[[ -x $out ]] && v=$("$out" version 2>/dev/null) && [[ ${v%%$'\n'*} == "Consul v$version" ]]
}

if cached_ok; then
	printf '%s\n' "$out"
	exit 0
fi

mkdir -p "$cache"
# Serialize concurrent callers: the second one waits and reuses the build.
exec 9>"$out.lock"
flock 9
if cached_ok; then
	printf '%s\n' "$out"
	exit 0
fi

export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
# consul pins a pseudo-version of this module that the checksum database
# does not verify; the module proxy still serves it.
export GONOSUMDB=github.com/envoyproxy/go-control-plane/xdsmatcher

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "consul-agent.sh: building consul v$version into $out (a few minutes, once)" >&2
(
	cd "$work"
	go mod init pauseproxy.invalid/consul-build
	go mod edit -require="github.com/hashicorp/consul@v$version"
	# -mod=mod lets the build fill in go.mod/go.sum with consul's own
	# dependency versions (replace directives of a dependency are ignored,
	# so consul/api and consul/sdk come from the module proxy).
	go build -trimpath -o "$work/consul" github.com/hashicorp/consul
) >&2
mv "$work/consul" "$out.tmp"
mv "$out.tmp" "$out"
cached_ok || { echo "consul-agent.sh: built $out does not report Consul v$version" >&2; exit 1; }
printf '%s\n' "$out"
