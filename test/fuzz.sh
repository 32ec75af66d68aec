#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 5s).
#
# A target fails when the fuzzer finds an input that fails (it writes it to
# testdata/fuzz/TARGET/ and prints "Failing input written to"), or when go test
# fails for any other reason; its whole output is printed then.
#
# One failure is not counted: Go's fuzzer sometimes ends a healthy run with
# "context deadline exceeded" when -fuzztime runs out while a worker is busy
# (golang/go#51484). Such a target is run once more, and only a second failure
# of any kind fails the run.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run PKG TARGET: 0 passed, 1 failed, 2 the deadline flake.
run() {
	"$GO" test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" "$1" >"$out" 2>&1 && return 0
	if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
		return 2
	fi
	return 1
}

failed=0
for pkg in $("$GO" list ./...); do
	for f in $("$GO" test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
		echo "fuzz $pkg $f"
		run "$pkg" "$f"
		rc=$?
		if [ "$rc" = 2 ]; then
			echo "  the fuzzer ended with \"context deadline exceeded\" and found nothing (golang/go#51484); running it once more"
			run "$pkg" "$f"
			rc=$?
		fi
		if [ "$rc" != 0 ]; then
			cat "$out"
			if grep -q 'Failing input written to' "$out"; then
				echo "FAIL: fuzz target $f of $pkg found a failing input; \`go test -run '$f' $pkg\` replays it"
			else
				echo "FAIL: fuzz target $f of $pkg (its output is above)"
			fi
			failed=1
		fi
	done
done
exit "$failed"
