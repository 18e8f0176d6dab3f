#!/usr/bin/env bash
# durable.sh: what the output gate costs. Builds partyd and wsbench
# (Release, build/bench), then for --durability full and normal starts
# partyd on a fresh data directory and drives the counter party (every
# reply waits for its commit) with one message in flight per connection:
#   1 room x 1 connection, 1 room x 16 connections, 100 rooms x 1 connection.
# Prints a table and writes it, with the machine it ran on, into
# docs/benchmarks.md between the "durable" markers.
#
# Environment: BENCH_DURATION (seconds measured per run, default 10),
# BENCH_WARMUP (default 2), BENCH_DATA_PARENT (where the data directory is
# made; default build/bench, i.e. the repository's filesystem),
# BENCH_NO_DOC=1 (print only, leave docs/benchmarks.md alone).
set -euo pipefail

bench_name=durable.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$bench_build
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
data_parent=${BENCH_DATA_PARENT:-$build}
command_line=$(bench_command durable.sh BENCH_DURATION BENCH_WARMUP BENCH_DATA_PARENT)

bench_build_release partyd wsbench

mkdir -p "$data_parent"
data=$(mktemp -d "$data_parent/durable-data-XXXXXX")
log="$data/partyd.log"

cleanup() {
    bench_stop_server
    rm -rf "$data"
}
trap cleanup EXIT

# Starts partyd with --durability $1 on its own directory under $data.
start_partyd() {
    mkdir -p "$data/$1"
    bench_start_partyd "$log" --data "$data/$1" --durability "$1"
}

field() { bench_field "$@"; }

ms() { # microseconds -> milliseconds, 2 decimals
    awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'
}

rows=""
failed=0
client_cpu=0
# The machine's user-space CPU time: less what partyd and wsbench used, it
# tells whether another job (a build, a fuzzer) ran during the measurement.
# Kernel time is left out: the journal, writeback and loopback softirqs
# work for partyd too.
start_ticks=$(bench_machine_ticks)
start_time=$(date +%s.%N)
for durability in full normal; do
    start_partyd "$durability"
    for shape in "1 1" "1 16" "100 100"; do
        read -r rooms conns <<<"$shape"
        case $shape in
        "1 1") label="1 room × 1 connection" ;;
        "1 16") label="1 room × 16 connections" ;;
        *) label="$rooms rooms × 1 connection each" ;;
        esac
        out=$("$build/bench/wsbench" counter --port "$port" --rooms "$rooms" --conns "$conns" \
            --inflight 1 --size 16 --duration "$duration" --warmup "$warmup" \
            --room-prefix "r${rooms}c${conns}") || failed=1
        echo "$out" | head -n1 >&2
        json=$(grep '^{' <<<"$out")
        errors=$(($(field errors "$json") + $(field unanswered "$json")))
        client_cpu=$(awk -v a="$client_cpu" -v b="$(field client_user_s "$json")" 'BEGIN { print a + b }')
        rows+="| $durability | $label | $(printf '%.0f' "$(field msgs_per_s "$json")") |"
        rows+=" $(ms "$(field p50_us "$json")") | $(ms "$(field p99_us "$json")") |"
        rows+=" $(ms "$(field p999_us "$json")") | $errors |"$'\n'
    done
    bench_stop_server
done
end_ticks=$(bench_machine_ticks)
end_time=$(date +%s.%N)
# Percent of one CPU used in user space by anything but partyd and wsbench.
others=$(awk -v busy=$((end_ticks - start_ticks)) -v server="$bench_server_ticks" \
    -v client="$client_cpu" -v hz="$(getconf CLK_TCK)" -v t0="$start_time" -v t1="$end_time" \
    'BEGIN { o = (busy - server) / hz - client; if (o < 0) o = 0; printf "%.0f", 100 * o / (t1 - t0) }')
if [ "$others" -gt 10 ]; then
    echo "durable.sh: other processes used ${others}% of a CPU (user space) during the runs: the numbers" \
        "may be disturbed; run again on a quiet machine" >&2
fi

cpu=$(bench_cpu_model)
fstype=$(df --output=fstype "$data" | tail -n1 | tr -d ' ')
revision=$(bench_revision)
table="| durability | rooms × connections | msgs/s | p50 ms | p99 ms | p99.9 ms | errors |
|---|---|---:|---:|---:|---:|---|
$rows"
machine="Machine: $(nproc) CPUs ($cpu), $(uname -sr); data directory on $fstype.
partyd $revision, Release build; $(date -u +%Y-%m-%d). Other processes used
${others}% of one CPU in user space during the runs (partyd and wsbench excluded).
Each run: counter party, 16-byte messages, 1 in flight per connection,
${warmup} s warm-up, ${duration} s measured, on fresh rooms.
Command: \`$command_line\`"

printf '\n%s\n%s\n' "$table" "$machine"

if [ "$failed" != 0 ]; then
    echo "durable.sh: a run reported errors; docs/benchmarks.md left alone" >&2
    exit 1
fi
if [ "${BENCH_NO_DOC:-}" = 1 ]; then
    exit 0
fi

bench_write_doc durable "What durability costs" "$table
$machine"
