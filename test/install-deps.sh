#!/bin/sh
# Installs what building and testing corral needs on a fresh Debian 12
# machine, and nothing that is already there. Idempotent; run as root.
# Used by `make deps`, which `make test`, `make run` and `make bench` run
# first.
set -eu

NFPM_VERSION=v2.45.2
STATICCHECK_VERSION=2026.2.2

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: run as root (sudo make ...): it installs Debian packages and boots containers" >&2
	exit 1
fi

missing=""
command -v systemd-nspawn >/dev/null || missing="$missing systemd-container"
command -v lintian >/dev/null || missing="$missing lintian"
command -v wrk >/dev/null || missing="$missing wrk"
command -v curl >/dev/null || missing="$missing curl"
# The integration suite runs Node and Python workers from these paths.
[ -x /usr/bin/node ] || missing="$missing nodejs"
[ -x /usr/bin/python3 ] || missing="$missing python3"
# make bench-peers: pm2 comes from npm (npm ci), the chart from gnuplot.
command -v npm >/dev/null || missing="$missing npm"
command -v gnuplot >/dev/null || missing="$missing gnuplot-nox"
if [ -n "$missing" ]; then
	echo "install-deps: apt-get install$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

gobin=$(go env GOPATH)/bin
if ! "$gobin/nfpm" --version 2>/dev/null | grep -q "nfpm" || [ "$(cat "$gobin/.nfpm-version" 2>/dev/null)" != "$NFPM_VERSION" ]; then
	echo "install-deps: go install nfpm@$NFPM_VERSION"
	go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
	echo "$NFPM_VERSION" > "$gobin/.nfpm-version"
fi
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "^staticcheck $STATICCHECK_VERSION "; then
	echo "install-deps: go install staticcheck@$STATICCHECK_VERSION"
	go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
