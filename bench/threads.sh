#!/usr/bin/env bash
# threads.sh: what several event loops buy. Builds partyd and wsbench
# (Release, build/bench), then runs each scenario against partyd
# --threads 1 and partyd --threads N in turn, BENCH_RUNS times each, each
# run on a freshly started partyd, and prints the median of each and their
# ratio. Writes the table, with the machine and the command, into
# docs/benchmarks.md between the "threads" markers.
#   echo      100 connections in 1 room, 1 and 8 in flight, 32 B
#   echo      100 rooms x 10 connections, 1 in flight, 32 B
#   broadcast 1 room x 1000 connections (1 sender, window of 16), 32 B
#   broadcast 10 rooms x 100 connections (a sender each, window of 16), 32 B
#   connect   50 handshakes under way at once, over 50 rooms
#   counter   10 rooms x 10 connections, 1 in flight (every message a write)
# wsbench is one thread and shares the machine's cores with partyd, so
# with as many loops as cores the client takes CPU the loops would use.
#
# Environment: BENCH_THREADS (N, default the number of cores), BENCH_RUNS
# (default 3), BENCH_DURATION and BENCH_WARMUP (seconds per run; default 5
# and 1), BENCH_NO_DOC=1 (print only).
set -euo pipefail

bench_name=threads.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

threads=${BENCH_THREADS:-$(nproc)}
runs=${BENCH_RUNS:-3}
duration=${BENCH_DURATION:-5}
warmup=${BENCH_WARMUP:-1}
command_line=$(bench_command threads.sh BENCH_THREADS BENCH_RUNS BENCH_DURATION BENCH_WARMUP)

bench_build_release partyd wsbench
wsbench="$bench_build/bench/wsbench"
work=$(mktemp -d "$bench_build/threads-XXXXXX")
trap 'bench_stop_server; rm -rf "$work"' EXIT

# name | metric field | wsbench arguments
scenarios=(
    "echo, 100 conns × 1 room, 1 in flight|msgs_per_s|echo --rooms 1 --conns 100 --inflight 1 --size 32"
    "echo, 100 conns × 1 room, 8 in flight|msgs_per_s|echo --rooms 1 --conns 100 --inflight 8 --size 32"
    "echo, 100 rooms × 10 conns, 1 in flight|msgs_per_s|echo --rooms 100 --conns 1000 --inflight 1 --size 32"
    "broadcast, 1 room × 1000 conns, window 16|deliveries_per_s|broadcast --rooms 1 --conns 1000 --inflight 16 --size 32"
    "broadcast, 10 rooms × 100 conns, window 16|deliveries_per_s|broadcast --rooms 10 --conns 1000 --inflight 16 --size 32"
    "connect, 50 at a time over 50 rooms|handshakes_per_s|connect --rooms 50 --conns 50"
    "durable counter, 10 rooms × 10 conns|msgs_per_s|counter --rooms 10 --conns 100 --inflight 1 --size 16"
)

# One run: a fresh partyd with --threads $1, one wsbench; prints the figure.
run_once() {
    local loops=$1 field=$2 args=$3 json
    rm -rf "$work/data"
    mkdir -p "$work/data"
    bench_start_partyd "$work/log" --threads "$loops" --data "$work/data"
    # shellcheck disable=SC2086
    json=$("$wsbench" $args --port "$port" --duration "$duration" --warmup "$warmup" | tail -n1)
    bench_stop_server
    bench_field "$field" "$json"
}

machine_before=$(bench_machine_ticks)
rows=""
for scenario in "${scenarios[@]}"; do
    IFS='|' read -r name field args <<<"$scenario"
    one=()
    many=()
    for _ in $(seq "$runs"); do
        one+=("$(run_once 1 "$field" "$args")")
        many+=("$(run_once "$threads" "$field" "$args")")
    done
    m1=$(printf '%s\n' "${one[@]}" | bench_median)
    mn=$(printf '%s\n' "${many[@]}" | bench_median)
    ratio=$(awk -v a="$mn" -v b="$m1" 'BEGIN { printf "%.2f", a / b }')
    printf '%s: --threads 1 %.0f (%s), --threads %s %.0f (%s): %s×\n' "$name" "$m1" \
        "$(printf '%.0f ' "${one[@]}" | sed 's/ $//')" "$threads" "$mn" \
        "$(printf '%.0f ' "${many[@]}" | sed 's/ $//')" "$ratio"
    rows+=$(printf '| %s | %s | %.0f | %.0f | %s× | %s / %s |' "$name" "${field//_per_s//s}" "$m1" "$mn" \
        "$ratio" "$(printf '%.0f, ' "${one[@]}" | sed 's/, $//')" "$(printf '%.0f, ' "${many[@]}" | sed 's/, $//')")
    rows+=$'\n'
done
machine_after=$(bench_machine_ticks)

others=$(awk -v m=$((machine_after - machine_before)) -v s="$bench_server_ticks" \
    -v t="$(getconf CLK_TCK)" -v secs="$SECONDS" 'BEGIN { printf "%.0f", 100 * (m - s) / t / secs }')
table="| scenario | metric | --threads 1 | --threads $threads | ratio | each run (1 / $threads) |
|---|---|---:|---:|---:|---|
${rows}
Machine: $(nproc) CPUs ($(bench_cpu_model)), Linux $(uname -r); partyd and
wsbench share the CPUs. partyd $(bench_revision), Release build; $(date -u +%Y-%m-%d).
Median of $runs runs per cell, each on a freshly started partyd, ${warmup} s
warm-up and ${duration} s measured. wsbench and the other processes used
${others}% of one CPU in user space on average during the runs.
Command: \`$command_line\`"

echo
echo "$table"
if [ "${BENCH_NO_DOC:-0}" != 1 ]; then
    bench_write_doc threads "Several event loops" "$table"
fi
