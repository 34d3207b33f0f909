#!/usr/bin/env bash
# The demo: a local 2-node Patroni cluster, pauseproxy in front of it,
# pgbench TPC-B through the proxy, and a switchover in the middle of the
# run. Prints transactions, failed transactions and the longest stall.
# Installs the Debian packages it needs first (needs root for that).
#
#   scripts/demo.sh [--duration 30s] [--clients 16]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN=local
if [[ $(id -u) == 0 ]]; then
	bash scripts/install-deps.sh >/dev/null
else
	for tool in patroni etcd psql pgbench; do
		command -v "$tool" >/dev/null || {
			echo "demo: $tool is missing; run as root (it installs the Debian packages) or: sudo bash scripts/install-deps.sh" >&2
			exit 1
		}
	done
fi
exec go run ./internal/demo "$@"
