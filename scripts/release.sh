#!/usr/bin/env bash
# release.sh builds the release binaries, from the repository root:
# static (CGO_ENABLED=0) Linux binaries for amd64 and arm64 in dist/, named
# pauseproxy-<version>-linux-<arch>, and dist/SHA256SUMS over them
# (`sha256sum -c SHA256SUMS` checks a download).
#
#   scripts/release.sh [VERSION]
#
# VERSION defaults to `git describe --tags --always --dirty`; it reaches
# `pauseproxy version` through -ldflags -X main.version. The environment
# may set DIST (output directory, default dist/, which git ignores) and
# ARCHES (default "amd64 arm64"). The tests run it with ARCHES=amd64.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

version="${1:-$(git describe --tags --always --dirty 2>/dev/null || true)}"
if [[ -z $version ]]; then
	echo "release.sh: no VERSION given and git describe has none" >&2
	exit 2
fi
if [[ ! $version =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; then
	echo "release.sh: VERSION $version: want letters, digits and . _ + -" >&2
	exit 2
fi
dist="${DIST:-dist}"
arches="${ARCHES:-amd64 arm64}"

mkdir -p "$dist"
files=()
for arch in $arches; do
	out="pauseproxy-${version}-linux-${arch}"
	echo "==> $dist/$out"
	# -trimpath: no build machine paths in the binary; -s -w: no symbol
	# table or DWARF (stack traces keep function names). The same flags as
	# the Dockerfile's build.
	CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath \
		-ldflags="-s -w -X main.version=${version}" \
		-o "$dist/$out" ./cmd/pauseproxy
	files+=("$out")
done
(cd "$dist" && sha256sum "${files[@]}" >SHA256SUMS)
echo "==> $dist/SHA256SUMS"
cat "$dist/SHA256SUMS"
