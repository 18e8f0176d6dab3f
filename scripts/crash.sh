#!/usr/bin/env bash
# Crash consistency, long version: the mixed-load crash test (counter
# writes, reminders, alarms and new connections, then kill -9 and a restart
# on the same data directory) for CYCLES cycles (default 200). Every
# acknowledged write must survive, every acknowledged reminder and alarm
# must fire, every room file must pass PRAGMA integrity_check.
#   scripts/crash.sh                    200 cycles on the make test build
#   CYCLES=1000 BUILD=build/dev scripts/crash.sh
#   SEED=12345 scripts/crash.sh         replay the crash moments of a run
# The last line says how it went; the exit status is the test's.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build/asan}
cycles=${CYCLES:-200}
if [ ! -d "$build" ]; then
  echo "crash.sh: no build in $build (run make test, or set BUILD)" >&2
  exit 2
fi
cmake --build "$build" --target test_crash partyd probe_party example_greeter -j 2 >/dev/null
export PARTY_CRASH_CYCLES=$cycles PARTY_CRASH_ONLY='*mixed*'
if [ -n "${SEED:-}" ]; then export PARTY_CRASH_SEED=$SEED; fi
exec "$build/tests/integration/test_crash"
