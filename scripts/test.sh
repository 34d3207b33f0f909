#!/usr/bin/env bash
# test.sh runs the checks CI runs, from the repository root: go vet, then the
# whole test suite with the race detector. It installs nothing: .ci/run does,
# on a fresh machine. The test command is the one the README gives.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN=local

# Discovery tests need a Consul agent; use the cached build if nobody said
# otherwise (scripts/consul-agent.sh builds it).
if [[ -z ${PAUSEPROXY_CONSUL:-} ]]; then
	cached="${XDG_CACHE_HOME:-$HOME/.cache}/pauseproxy/consul-1.14.11"
	if [[ -x $cached ]]; then
		export PAUSEPROXY_CONSUL=$cached
	fi
fi

t0=$SECONDS
echo "==> go vet ./..."
go vet ./...
echo "<== go vet: $((SECONDS - t0))s"

t0=$SECONDS
echo "==> go test -race -count=1 -timeout 25m ./..."
go test -race -count=1 -timeout 25m ./...
echo "<== go test: $((SECONDS - t0))s"
