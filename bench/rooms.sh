#!/usr/bin/env bash
# rooms.sh: what a room in memory costs. Builds partyd and wsbench
# (Release, build/bench), then, BENCH_RUNS times, starts a fresh partyd,
# reads its anonymous memory, opens one idle WebSocket to each of N rooms
# of the built-in counter party (which does not hibernate, so every room
# stays loaded), waits until all are open
# and 4 s more, and reads the memory again. Prints the median bytes per
# room (connections included: about 600 B each, see "Idle connections")
# and writes the table into docs/benchmarks.md between the "rooms"
# markers.
#
# Environment: BENCH_ROOMS (N, default 1000), BENCH_RUNS (default 3),
# BENCH_PARTYD (another partyd binary to measure instead of the one built
# here, e.g. one built from an older revision; nothing is written to the
# docs then), BENCH_NO_DOC=1 (print only).
set -euo pipefail

bench_name=rooms.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rooms=${BENCH_ROOMS:-1000}
runs=${BENCH_RUNS:-3}
command_line=$(bench_command rooms.sh BENCH_ROOMS BENCH_RUNS)

bench_build_release partyd wsbench
partyd=${BENCH_PARTYD:-$bench_build/partyd}
wsbench="$bench_build/bench/wsbench"
work=$(mktemp -d "$bench_build/rooms-XXXXXX")
client_pid=""
cleanup() {
    if [ -n "$client_pid" ] && kill -0 "$client_pid" 2>/dev/null; then
        kill "$client_pid" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    bench_stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# One run: sets before and held (anonymous KiB).
run_once() {
    rm -rf "$work/data"
    mkdir -p "$work/data"
    bench_start_server "$work/log" "$partyd" --port 0 --data "$work/data" --idle-timeout 60
    before=$(bench_anon_kb "$bench_server_pid")
    "$wsbench" idle --port "$port" --party counter --room-prefix r --rooms "$rooms" \
        --conns "$rooms" --duration 10 --connect-timeout 60 >"$work/client.out" 2>&1 &
    client_pid=$!
    bench_wait_holding "$work/client.out" "$client_pid" 60
    if ! grep -q "^wsbench idle: holding $rooms " "$work/client.out"; then
        echo "rooms.sh: not every connection opened:" >&2
        cat "$work/client.out" >&2
        exit 1
    fi
    sleep 4
    held=$(bench_anon_kb "$bench_server_pid")
    wait "$client_pid" || true
    client_pid=""
    bench_stop_server
}

per_room=()
for _ in $(seq "$runs"); do
    run_once
    per_room+=("$(awk -v a="$held" -v b="$before" -v n="$rooms" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')")
    echo "rooms.sh: $rooms rooms loaded: anonymous memory $before → $held KiB" >&2
done
median=$(printf '%s\n' "${per_room[@]}" | bench_median)
revision=$(bench_revision)
if [ -n "${BENCH_PARTYD:-}" ]; then
    revision="$partyd"
fi
table="| rooms loaded | B per room (median) | each run |
|---:|---:|---|
| $rooms | **$median** | $(printf '%s, ' "${per_room[@]}" | sed 's/, $//') |

Machine: $(nproc) CPUs ($(bench_cpu_model)), Linux $(uname -r). partyd
$revision, Release build; $(date -u +%Y-%m-%d). Anonymous memory of
partyd (\`/proc/PID/smaps_rollup\`), 4 s after the last of one idle
\`wsbench idle\` connection to each counter room opened; a fresh partyd
each run.
Command: \`$command_line\`"

echo
echo "$table"
if [ "${BENCH_NO_DOC:-0}" != 1 ] && [ -z "${BENCH_PARTYD:-}" ]; then
    bench_write_doc rooms "A loaded room's memory" "$table"
fi
