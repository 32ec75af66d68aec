#!/usr/bin/env bash
# Installs what building and testing corral needs on a fresh Debian 12
# machine, and nothing that is already there. Idempotent; run as root.
# Used by `make deps`, which `make test`, `make run` and `make bench` run
# first.
#
# Go tools go where `go install` puts them: $GOBIN if set, else the first
# GOPATH entry's bin/. The Makefile runs them from there by full path, so a
# copy of another version elsewhere on PATH is never used.
#
# Each Go tool is pinned by the version of its Go module, the one the Go
# module proxy serves, never by a release name (staticcheck's release
# 2026.2.2 is module v0.8.2; `staticcheck -version` prints both) and never
# @latest. A tool is installed again when its binary names another module
# version, or was built by another Go than this one: staticcheck must be
# built by the Go whose code it checks.
set -euo pipefail

GO_TOOLS=(
	# module path of the command              version  why
	"honnef.co/go/tools/cmd/staticcheck       v0.8.2   make check lints the code with it"
	"github.com/goreleaser/nfpm/v2/cmd/nfpm   v2.45.2  make deb builds the .deb with it"
)

# Debian packages: the command that tells it is there, its package, and why.
APT_TOOLS=(
	"systemd-nspawn  systemd-container  the integration tests and make run boot a real systemd in it"
	"lintian         lintian            make lintian checks the .deb"
	"wrk             wrk                the integration tests and benchmarks send load with it"
	"curl            curl               the integration tests and make run query the demo with it"
	"/usr/bin/node   nodejs             the integration tests run Node workers from this path"
	"/usr/bin/python3 python3           the integration tests run Python workers from this path"
	"/usr/bin/gunicorn gunicorn         the integration tests serve the WSGI example with it (and python3-gunicorn)"
	"/usr/bin/uvicorn uvicorn           the integration tests serve the ASGI example with it (and python3-uvicorn)"
	"npm             npm                the integration tests install express, fastify and koa with it, make bench-peers pm2 (npm ci)"
	"gnuplot         gnuplot-nox        make bench-peers draws its chart with it"
	"dot             graphviz           make steering-picture draws docs/steering.png with it"
	"qemu-system-x86_64 qemu-system-x86 make vmtest boots Debian's kernel in it, for real cgroup limits"
	"/usr/sbin/haproxy haproxy          the multi-host integration test puts it in front of two hosts with agent-check (test/haproxy)"
	"/usr/bin/promtool prometheus       the metrics test checks corrald's output with promtool and scrapes it with a real Prometheus (test/prom)"
)

say() { echo "install-deps: $*"; }

# fail COMMAND WHAT-TO-TRY: the one line that says what failed and what to do.
fail() {
	echo "install-deps: FAILED: $1" >&2
	echo "install-deps: try: $2" >&2
	exit 1
}

if [ "$(id -u)" != 0 ]; then
	fail "install-deps as uid $(id -u)" "sudo make ... (it installs Debian packages, and the tests boot containers as root)"
fi
command -v go >/dev/null ||
	fail "command -v go" "put Go on PATH (export PATH=\$PATH:/usr/local/go/bin), then make deps again"

# present CMD: is the command there (a path, or a name on PATH)?
present() {
	case $1 in
	/*) [ -x "$1" ] ;;
	*) command -v "$1" >/dev/null ;;
	esac
}

pkgs=() why=()
for t in "${APT_TOOLS[@]}"; do
	read -r cmd pkg reason <<<"$t"
	present "$cmd" && continue
	pkgs+=("$pkg")
	why+=("$pkg: $reason")
done
if [ ${#pkgs[@]} -gt 0 ]; then
	say "apt-get install ${pkgs[*]} ($(
		IFS=';'
		echo "${why[*]}" | sed 's/;/; /g'
	))"
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	if ! apt-get update -qq >"$log" 2>&1; then
		cat "$log" >&2
		fail "apt-get update" "check that /etc/apt/sources.list and sources.list.d reach Debian's mirror, then make deps again"
	fi
	cmd=(apt-get install -y -qq --no-install-recommends "${pkgs[@]}")
	if ! DEBIAN_FRONTEND=noninteractive "${cmd[@]}" >"$log" 2>&1; then
		cat "$log" >&2
		fail "DEBIAN_FRONTEND=noninteractive ${cmd[*]}" "run it by hand to see which package apt cannot get; 'dpkg --configure -a' if dpkg was interrupted"
	fi
	for t in "${APT_TOOLS[@]}"; do
		read -r cmd pkg _ <<<"$t"
		present "$cmd" || fail "apt-get install $pkg left no $cmd" "apt-get install --reinstall $pkg"
	done
fi

gobin=$(go env GOBIN)
if [ -z "$gobin" ]; then
	gopath=$(go env GOPATH)
	gobin=${gopath%%:*}/bin
fi
gover=$(go env GOVERSION)

# installed BIN MODULE VERSION: is BIN built from MODULE at VERSION by this Go?
installed() {
	local info
	info=$(go version -m "$1" 2>/dev/null) || return 1
	[ "$(head -n 1 <<<"$info")" = "$1: $gover" ] || return 1
	awk -v m="$2" -v v="$3" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }' <<<"$info"
}

for t in "${GO_TOOLS[@]}"; do
	read -r pkg version reason <<<"$t"
	bin=$gobin/${pkg##*/}
	# The module is the package path less /cmd/NAME.
	mod=${pkg%/cmd/*}
	installed "$bin" "$mod" "$version" && continue
	say "go install $pkg@$version into $gobin ($reason)"
	if ! GOBIN=$gobin go install "$pkg@$version"; then
		fail "GOBIN=$gobin go install $pkg@$version" "'go list -m -versions $mod' lists the versions the proxy serves: pin one of those in test/install-deps.sh; if that fails too, 'go env GOPROXY' must name a Go module proxy this machine reaches"
	fi
	installed "$bin" "$mod" "$version" ||
		fail "go version -m $bin does not show $mod $version built by $gover" "rm $bin, then make deps again"
done
say "ok: ${#APT_TOOLS[@]} Debian tools and ${#GO_TOOLS[@]} Go tools (in $gobin) present"
