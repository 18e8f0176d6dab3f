#!/usr/bin/env bash
# upgrade_prev.sh: an upgrade from the previous commit's partyd to this
# build's. Builds partyd (Release, the partyd target only) from the first
# parent of HEAD, exported with git archive, then runs upgrade_prev.mjs,
# which starts that binary with clients and upgrades it to $PARTYD.
#
#   upgrade_prev.sh SOURCE_DIR CACHE_DIR CC NODE
#
# The old binary is kept in CACHE_DIR under its commit, so a second run
# does not build it again. Exits 77 (ctest: skipped) with the reason when
# there is no previous commit to build, it has no upgrade support, it does
# not build, or partyd runs under a wrapper (valgrind); with CI=true a
# missing previous commit (a shallow clone) is a failure instead, so CI
# never passes without running the test.
set -euo pipefail

src=$1 cache=$2 cc=$3 node=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

skip() {
    echo "SKIPPED: $*" >&2
    exit 77
}

if [ -n "${PARTYD_WRAPPER:-}" ]; then
    skip "partyd runs under a wrapper ($PARTYD_WRAPPER): building and running the previous commit's partyd there is too slow; run it in make test"
fi
: "${PARTYD:?PARTYD, the partyd of this build, is not set: run this test through ctest}"
if ! command -v git >/dev/null || ! git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    skip "$src is not a git checkout, so there is no previous commit to build"
fi
if ! rev=$(git -C "$src" rev-parse --verify --quiet 'HEAD~1^{commit}'); then
    head=$(git -C "$src" rev-parse --short HEAD)
    why="HEAD, $head, has no parent in this clone"
    if [ "$(git -C "$src" rev-parse --is-shallow-repository)" = true ]; then
        why="$why (a shallow clone: git fetch --unshallow)"
    fi
    if [ "${CI:-}" = true ]; then
        echo "FAILED: $why; CI must run this test with the full history" >&2
        exit 1
    fi
    skip "$why"
fi
short=$(git -C "$src" rev-parse --short "$rev")
if ! git -C "$src" cat-file -e "$rev:src/runtime/upgrade.c" 2>/dev/null; then
    skip "the previous commit ($short) predates upgrades (no src/runtime/upgrade.c)"
fi

old="$cache/partyd-$rev"
if [ ! -x "$old" ]; then
    mkdir -p "$cache"
    rm -rf "$cache"/partyd-* "$cache"/build-* # other commits' binaries
    work=$(mktemp -d "$cache/build-XXXXXX")
    trap 'rm -rf "$work"' EXIT
    start=$(date +%s)
    # Under make test, make's job server is not this build's.
    unset MAKEFLAGS MFLAGS MAKELEVEL
    git -C "$src" archive "$rev" | tar -x -C "$work"
    if ! cmake -S "$work" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF \
        -DCMAKE_C_COMPILER="$cc" >"$work/build.log" 2>&1 ||
        ! cmake --build "$work/build" -j 2 --target partyd >>"$work/build.log" 2>&1; then
        tail -n 30 "$work/build.log" >&2
        skip "the previous commit ($short) does not build (above)"
    fi
    # A rename: a concurrent run sees the whole binary or none.
    cp "$work/build/partyd" "$work/partyd"
    mv "$work/partyd" "$old"
    rm -rf "$work"
    trap - EXIT
    echo "built partyd of $short in $(($(date +%s) - start)) s" >&2
else
    echo "partyd of $short: built before ($old)" >&2
fi

cd "$here"
OLD_PARTYD=$old OLD_REV=$short exec "$node" --test upgrade_prev.mjs
