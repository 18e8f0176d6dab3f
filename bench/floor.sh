#!/usr/bin/env bash
# floor.sh: how close partyd's echo comes to what loopback TCP allows on
# this machine. Builds partyd, wsbench and pingpong (Release, build/bench),
# then for each shape runs, in turn, BENCH_RUNS times each:
#   pingpong  two processes exchanging raw 38-byte messages (what wsbench
#             sends for a 32-byte message) over the same number of
#             connections, one recv() and one send() per message at each
#             end, no protocol: the floor;
#   partyd    a freshly started partyd (its default --threads) under
#             wsbench echo with the same connections, rooms and window.
# Prints the median of each and partyd's share of the floor, and writes
# the table, with the machine and the command, into docs/benchmarks.md
# between the "floor" markers.
#
# Environment: BENCH_RUNS (default 3), BENCH_DURATION and BENCH_WARMUP
# (seconds per run; default 5 and 1), BENCH_NO_DOC=1 (print only).
set -euo pipefail

bench_name=floor.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=${BENCH_RUNS:-3}
duration=${BENCH_DURATION:-5}
warmup=${BENCH_WARMUP:-1}
command_line=$(bench_command floor.sh BENCH_RUNS BENCH_DURATION BENCH_WARMUP)

bench_build_release partyd wsbench pingpong
wsbench="$bench_build/bench/wsbench"
pingpong="$bench_build/bench/pingpong"
work=$(mktemp -d "$bench_build/floor-XXXXXX")
trap 'bench_stop_server; rm -rf "$work"' EXIT

# name | connections | rooms | in flight
shapes=(
    "echo, 100 conns × 1 room, 1 in flight|100|1|1"
    "echo, 100 rooms × 10 conns, 1 in flight|1000|100|1"
    "echo, 100 conns × 1 room, 8 in flight|100|1|8"
)

# Each run sets $figure (msgs/s), in this shell so that the server it
# starts is known to the EXIT trap, and stops the script if it failed.
figure=""

floor_once() {
    local json
    json=$("$pingpong" --conns "$1" --inflight "$2" --size 38 --duration "$duration" \
        --warmup "$warmup" | tail -n1) || {
        echo "floor.sh: pingpong failed" >&2
        exit 1
    }
    figure=$(bench_field msgs_per_s "$json")
    check_figure pingpong
}

partyd_once() {
    local json
    rm -rf "$work/data"
    mkdir -p "$work/data"
    bench_start_partyd "$work/log" --data "$work/data"
    json=$("$wsbench" echo --rooms "$2" --conns "$1" --inflight "$3" --size 32 --port "$port" \
        --duration "$duration" --warmup "$warmup" | tail -n1) || {
        echo "floor.sh: wsbench against partyd failed" >&2
        exit 1
    }
    bench_stop_server
    figure=$(bench_field msgs_per_s "$json")
    check_figure wsbench
}

check_figure() {
    if ! [[ $figure =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
        echo "floor.sh: $1 gave no figure" >&2
        exit 1
    fi
}

list() {
    printf '%.0f, ' "$@" | sed 's/, $//'
}

rows=""
for shape in "${shapes[@]}"; do
    IFS='|' read -r name conns rooms inflight <<<"$shape"
    floor=()
    ours=()
    for _ in $(seq "$runs"); do
        floor_once "$conns" "$inflight"
        floor+=("$figure")
        partyd_once "$conns" "$rooms" "$inflight"
        ours+=("$figure")
    done
    mf=$(printf '%s\n' "${floor[@]}" | bench_median)
    mp=$(printf '%s\n' "${ours[@]}" | bench_median)
    share=$(awk -v a="$mp" -v b="$mf" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    printf '%s: floor %.0f (%s), partyd %.0f (%s): %s\n' "$name" "$mf" "$(list "${floor[@]}")" \
        "$mp" "$(list "${ours[@]}")" "$share"
    rows+=$(printf '| %s | %.0f | %.0f | %s | %s / %s |' "$name" "$mf" "$mp" "$share" \
        "$(list "${floor[@]}")" "$(list "${ours[@]}")")
    rows+=$'\n'
done

table="| shape | floor (pingpong), msgs/s | partyd (wsbench echo), msgs/s | partyd ÷ floor | each run (floor / partyd) |
|---|---:|---:|---:|---|
${rows}
Machine: $(nproc) CPUs ($(bench_cpu_model)), Linux $(uname -r). partyd
$(bench_revision), Release build, its default event loops; $(date -u +%Y-%m-%d).
Median of $runs runs per cell, each partyd freshly started, ${warmup} s
warm-up and ${duration} s measured.
Command: \`$command_line\`"

echo
echo "$table"
if [ "${BENCH_NO_DOC:-0}" != 1 ]; then
    bench_write_doc floor "The floor: loopback TCP without a protocol" "$table"
fi
