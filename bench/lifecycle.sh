#!/usr/bin/env bash
# lifecycle.sh: how fast rooms come into memory, against rooms already
# there, with one client. Builds partyd and wsbench (Release,
# build/bench); for each N of BENCH_ROOMS starts partyd on a fresh data
# directory and opens one WebSocket to each of N counter rooms
# (`wsbench idle --grouped`, handshakes/s), pass after pass, each once
# the connections of the one before are gone:
#   new      every room new: a load, then its first commit (the name)
#   warm     the same rooms, still loaded: the reference
#   evicted  after every room left memory (--idle-timeout): loaded again
#   cold     after a restart of partyd on the same directory
#   warm     again, after the cold pass
# Prints a table and writes it into docs/benchmarks.md between the
# "lifecycle" markers.
#
# Environment: BENCH_ROOMS (default "1000 10000"), BENCH_DURABILITY
# (default full), BENCH_IDLE_TIMEOUT (seconds, default 5: long enough for
# the warm pass to find every room still loaded), BENCH_NO_DOC=1 (print
# only).
set -euo pipefail

bench_name=lifecycle.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sizes=${BENCH_ROOMS:-1000 10000}
durability=${BENCH_DURABILITY:-full}
idle_timeout=${BENCH_IDLE_TIMEOUT:-5}
command_line=$(bench_command lifecycle.sh BENCH_ROOMS BENCH_DURABILITY BENCH_IDLE_TIMEOUT)

bench_build_release partyd wsbench
wsbench="$bench_build/bench/wsbench"
work=$(mktemp -d "$bench_build/lifecycle-XXXXXX")

cleanup() {
    bench_stop_server
    rm -rf "$work"
}
trap cleanup EXIT

start() {
    bench_start_partyd "$work/partyd.log" --data "$1" --durability "$durability" \
        --idle-timeout "$idle_timeout"
}

# One pass over rooms l<N>-0 .. l<N>-(N-1): handshakes/s.
pass() {
    local out json
    out=$("$wsbench" idle --port "$port" --party counter --room-prefix "l$1" --rooms "$1" \
        --grouped --conns "$1" --duration 0.2 --connect-timeout 120)
    json=$(grep '^{' <<<"$out")
    printf '%.0f' "$(bench_field handshakes_per_s "$json")"
}

# Rooms in memory now (partyd_rooms_known{state="awake"}).
awake() {
    curl -s "http://127.0.0.1:$port/_partyd/metrics" |
        sed -n 's/^partyd_rooms_known{state="awake"} \([0-9]*\).*/\1/p'
}

# Waits until the connections of the pass before are gone (the scrape is
# the only one left), so that no pass pays for the closes of another.
settle() {
    local open
    for _ in $(seq 600); do
        open=$(curl -s "http://127.0.0.1:$port/_partyd/metrics" |
            sed -n 's/^partyd_connections_open \([0-9]*\).*/\1/p')
        [ "$open" = 1 ] && return 0
        sleep 0.05
    done
    echo "$bench_name: connections still open after 30 s" >&2
    exit 1
}

# A warm pass must find every room still in memory.
expect_awake() {
    if [ "$(awake)" != "$1" ]; then
        echo "$bench_name: $(awake) rooms awake before a warm pass, not $1 (raise BENCH_IDLE_TIMEOUT)" >&2
        exit 1
    fi
}

rows=""
for n in $sizes; do
    data="$work/data-$n"
    mkdir -p "$data"
    start "$data"
    new=$(pass "$n")
    settle
    expect_awake "$n"
    warm=$(pass "$n")
    settle
    # Every room idle now: wait until all have left memory.
    for _ in $(seq 600); do
        [ "$(awake)" = 0 ] && break
        sleep 0.1
    done
    if [ "$(awake)" != 0 ]; then
        echo "$bench_name: rooms still awake after 60 s" >&2
        exit 1
    fi
    evicted=$(pass "$n")
    bench_stop_server
    start "$data"
    cold=$(pass "$n")
    settle
    expect_awake "$n"
    warm_again=$(pass "$n")
    bench_stop_server
    echo "$n rooms: new $new, warm $warm, evicted and back $evicted, cold $cold, warm $warm_again" >&2
    rows+="| $n | $new | $warm | $evicted | $cold | $warm_again |"$'\n'
done

table="| rooms | new | warm | evicted, back | cold (after a restart) | warm |
|---:|---:|---:|---:|---:|---:|
${rows%$'\n'}

Handshakes/s of one WebSocket to each room (\`wsbench idle --grouped\`),
\`--durability $durability\`, \`--idle-timeout $idle_timeout\`. partyd $(bench_revision), Release;
$(nproc) CPUs ($(bench_cpu_model)); $(date -u +%Y-%m-%d).

Command: \`$command_line\`"
echo "$table"
if [ "${BENCH_NO_DOC:-}" != 1 ]; then
    bench_write_doc lifecycle "Rooms coming into memory" "$table"
fi
