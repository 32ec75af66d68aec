#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s).
#
# A failing target is run once more, and only a failure that comes back
# fails the run. A failing input the fuzzer found is written to the
# package's testdata/fuzz/TARGET/ and replayed first by the second run, so a
# real failure always comes back. Go's fuzzer also fails healthy runs now and
# then: "context deadline exceeded" when -fuzztime runs out while a worker is
# busy (golang/go#51484), "fuzzing process hung or terminated unexpectedly"
# (golang/go#56238). The output of every failure is printed.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() {
	"$GO" test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" "$1" >"$out" 2>&1
}

failed=0
pkgs=$("$GO" list ./...) || { echo "FAIL: '$GO list ./...' failed: run it to see why" >&2; exit 1; }
for pkg in $pkgs; do
	if ! list=$("$GO" test -list '^Fuzz' "$pkg" 2>&1); then
		echo "$list"
		echo "FAIL: cannot list the fuzz targets of $pkg: 'go test -list Fuzz $pkg' shows why" >&2
		failed=1
		continue
	fi
	for f in $(grep '^Fuzz' <<<"$list"); do
		echo "fuzz $pkg $f"
		run "$pkg" "$f" && continue
		cat "$out"
		echo "  $f failed; running it once more, to tell a failure from a flake of Go's fuzzer"
		if run "$pkg" "$f"; then
			echo "  $f passed the second time, replaying any input written above: not counted as a failure"
			continue
		fi
		cat "$out"
		echo "FAIL: fuzz target $f of $pkg, twice; \`go test -run '^$f\$' $pkg\` replays the inputs in its testdata/fuzz/$f/"
		failed=1
	done
done
exit "$failed"
