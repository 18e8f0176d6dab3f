#!/usr/bin/env bash
# flood.sh: what one flooding client address costs everyone else. 100
# clients (wsbench echo from 127.0.0.2: 100 rooms × 1 connection, 1
# message in flight each, 32 B) are measured alone, then while one other
# address (127.0.0.3: wsbench echo, 10 connections × 64 in flight, 1 KiB)
# sends as fast as partyd reads it — once with the default limits, once
# with that address exempt from them. The 100 clients are exempt
# (--limit-exempt) so that their own closed-loop rate, which may pass
# 1000 messages a second, is never what is measured. partyd runs one event
# loop (--threads 1): the flood and the clients share it, the worst case.
# Prints the clients' msgs/s, p50 and p99 (medians of BENCH_RUNS runs),
# the messages of the flood that were answered and for how long it ran,
# and how many of its connections partyd closed with 1013 (from
# /_partyd/metrics), and writes the table, with the command, into
# docs/benchmarks.md between the "flood" markers unless BENCH_NO_DOC=1.
#
# Environment: BENCH_RUNS (default 3), BENCH_DURATION and BENCH_WARMUP
# (seconds; default 5 and 1), BENCH_NO_DOC=1.
set -euo pipefail

bench_name=flood.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=${BENCH_RUNS:-3}
duration=${BENCH_DURATION:-5}
warmup=${BENCH_WARMUP:-1}
command_line=$(bench_command flood.sh BENCH_RUNS BENCH_DURATION BENCH_WARMUP)

bench_build_release partyd wsbench
wsbench="$bench_build/bench/wsbench"
work=$(mktemp -d "$bench_build/flood-XXXXXX")
flood_pid=""
trap 'if [ -n "$flood_pid" ]; then kill "$flood_pid" 2>/dev/null || true; fi; bench_stop_server; rm -rf "$work"' EXIT

# name | --limit-exempt | flood (1: yes)
scenarios=(
    "alone|127.0.0.2|0"
    "one address flooding, default limits|127.0.0.2|1"
    "one address flooding, no limits for it|127.0.0.2,127.0.0.3|1"
)

# One run: sets clients_json, flood_json and closed (1013 closes).
run_once() {
    local exempt=$1 flood=$2
    rm -rf "$work/data"
    mkdir -p "$work/data"
    bench_start_partyd "$work/log" --threads 1 --data "$work/data" --limit-exempt "$exempt"
    flood_json=""
    if [ "$flood" = 1 ]; then
        # The flood starts first and outlasts the measured clients.
        "$wsbench" echo --source 127.0.0.3 --rooms 10 --conns 10 --inflight 64 --size 1024 \
            --room-prefix flood --port "$port" --warmup 0 \
            --duration "$(awk -v d="$duration" -v w="$warmup" 'BEGIN { print d + w + 2 }')" \
            >"$work/flood.out" 2>"$work/flood.err" &
        flood_pid=$!
        sleep 1
    fi
    clients_json=$("$wsbench" echo --source 127.0.0.2 --rooms 100 --conns 100 --inflight 1 \
        --size 32 --room-prefix client --port "$port" --duration "$duration" --warmup "$warmup" |
        grep '^{') || {
        echo "flood.sh: the clients' wsbench failed" >&2
        exit 1
    }
    if [ -n "$flood_pid" ]; then
        # wsbench ends on its own; a flood closed with 1013 ends early.
        wait "$flood_pid" || true
        flood_pid=""
        flood_json=$(grep '^{' "$work/flood.out" || true)
    fi
    closed=$(curl -s "http://127.0.0.1:$port/_partyd/metrics" |
        awk '$1 == "partyd_limit_conn_closed_total" { print $2 }')
    bench_stop_server
}

rows=""
for scenario in "${scenarios[@]}"; do
    IFS='|' read -r name exempt flood <<<"$scenario"
    rates=() p50s=() p99s=() floods=() secs=() closes=()
    for _ in $(seq "$runs"); do
        run_once "$exempt" "$flood"
        rates+=("$(bench_field msgs_per_s "$clients_json")")
        p50s+=("$(bench_field p50_us "$clients_json")")
        p99s+=("$(bench_field p99_us "$clients_json")")
        if [ "$flood" = 1 ]; then
            floods+=("$(bench_field msgs "$flood_json")")
            secs+=("$(bench_field duration_s "$flood_json")")
            closes+=("${closed:-0}")
        fi
    done
    rate=$(printf '%s\n' "${rates[@]}" | bench_median)
    p50=$(printf '%s\n' "${p50s[@]}" | bench_median)
    p99=$(printf '%s\n' "${p99s[@]}" | bench_median)
    fl="—"
    if [ "$flood" = 1 ]; then
        fl=$(printf '%.0f in %.2f s; %s of 10 closed (1013)' \
            "$(printf '%s\n' "${floods[@]}" | bench_median)" \
            "$(printf '%s\n' "${secs[@]}" | bench_median)" \
            "$(printf '%s\n' "${closes[@]}" | bench_median)")
    fi
    printf '%s: clients %.0f msgs/s, p50 %.0f us, p99 %.0f us (p99 each run: %s); flood %s\n' \
        "$name" "$rate" "$p50" "$p99" "$(printf '%.0f ' "${p99s[@]}")" "$fl"
    rows+=$(printf '| %s | %.0f | %.2f | %.2f | %s | %s |' "$name" "$rate" \
        "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" \
        "$(printf '%s\n' "${p99s[@]}" | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / 1000 }')" "$fl")
    rows+=$'\n'
done

table="| scenario | 100 clients, msgs/s | p50, ms | p99, ms | p99 each run, ms | flood: messages answered, for how long, its connections closed |
|---|---:|---:|---:|---|---:|
${rows}
Machine: $(nproc) CPUs ($(bench_cpu_model)), Linux $(uname -r). partyd
$(bench_revision), Release build, --threads 1; $(date -u +%Y-%m-%d).
Clients: \`wsbench echo --source 127.0.0.2 --rooms 100 --conns 100 --inflight 1 --size 32\`;
flood: \`wsbench echo --source 127.0.0.3 --rooms 10 --conns 10 --inflight 64 --size 1024\`.
Median of $runs runs per row, ${warmup} s warm-up and ${duration} s measured.
Command: \`$command_line\`"

echo
echo "$table"
if [ "${BENCH_NO_DOC:-0}" != 1 ]; then
    bench_write_doc flood "A flooding client and the others" "$table"
fi
