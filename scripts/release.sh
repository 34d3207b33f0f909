#!/usr/bin/env bash
# release.sh builds the release binaries, from the repository root:
# static (CGO_ENABLED=0) Linux binaries for amd64 and arm64 in dist/, named
# pauseproxy-<version>-linux-<arch>, and dist/SHA256SUMS over them
# (`sha256sum -c SHA256SUMS` checks a download).
#
#   scripts/release.sh [VERSION]
#
# VERSION defaults to the tag on HEAD (v0.2.0 gives 0.2.0), else to the
# unstamped build's form, devVersion of cmd/pauseproxy/version.go with the
# commit: 0.2.0-dev+3f82809aaa1b (.dirty with uncommitted changes). It
# reaches `pauseproxy version` through -ldflags -X main.version. The environment
# may set DIST (output directory, default dist/, which git ignores) and
# ARCHES (default "amd64 arm64"). The tests run it with ARCHES=amd64.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PATH="/usr/local/go/bin:$PATH"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

version="${1:-}"
if [[ -z $version ]]; then
	if tag=$(git describe --tags --exact-match 2>/dev/null); then
		version="${tag#v}"
	else
		dev=$(sed -n 's/^const devVersion = "\(.*\)"$/\1/p' cmd/pauseproxy/version.go)
		commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
		if [[ -z $dev || -z $commit ]]; then
			echo "release.sh: give a VERSION (no tag on HEAD, and no commit or devVersion to name the build)" >&2
			exit 2
		fi
		version="$dev+$commit"
		if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
			version+=".dirty"
		fi
	fi
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
