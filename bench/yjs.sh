#!/usr/bin/env bash
# yjs.sh: the Yjs benchmark. Builds partyd and yjs_merge (Release,
# build/bench), installs the npm packages of tests/yjs if needed, and runs
# bench/yjs.mjs: merging a 20,000-keystroke log (partyd's codec vs
# Y.mergeUpdates in node, same log) and the time a new y-websocket client
# takes to sync a 20,000-update document from partyd. Prints JSON.
#
# Environment: BENCH_KEYS (default 20000), BENCH_RUNS (merge runs, default
# 5), BENCH_SYNCS (new clients timed, default 5).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/bench"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target partyd yjs_merge >/dev/null
(cd "$root/tests/yjs" && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error; fi)
exec node "$root/bench/yjs.mjs" "$build/partyd" "$build/bench/yjs_merge"
