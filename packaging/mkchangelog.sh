#!/bin/sh
# mkchangelog.sh VERSION CHANGELOG: print the Debian changelog for a package of
# VERSION. If the newest entry of CHANGELOG is not VERSION (a development or
# test build, e.g. `make deb VERSION=0.1.1`), print an entry for VERSION
# first, dated now (or $SOURCE_DATE_EPOCH), so that the changelog in the
# package always names the package's own version. Release: add a real entry
# to packaging/changelog and set packaging/VERSION to match.
set -eu

version=$1
src=$2

top=$(sed -n '1s/^corral (\([^)]*\)).*/\1/p' "$src")
if [ -z "$top" ]; then
	echo "mkchangelog.sh: $src: first line is not 'corral (VERSION) ...'" >&2
	exit 1
fi

if [ "$top" != "$version" ]; then
	maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$src" | head -n 1)
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		date=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
	else
		date=$(LC_ALL=C date -u -R)
	fi
	cat <<ENTRY
corral ($version) unstable; urgency=medium

  * Development build of $version from the source tree; see the project's
    version control history for the changes since $top.

 -- $maintainer  $date

ENTRY
fi
cat "$src"
