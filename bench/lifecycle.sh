#!/usr/bin/env bash
# lifecycle.sh: how fast rooms come into memory, against rooms already
# there, with one client. Builds partyd and wsbench (Release,
# build/bench); for each N of BENCH_ROOMS starts partyd on a fresh data
# directory and opens one WebSocket to each of N rooms (counter by default)
# (`wsbench idle --grouped`, handshakes/s), pass after pass, each once
# the connections of the one before are gone:
#   new      every room new: a load, then its first commit (the name)
#   warm     the same rooms, still loaded: the reference
#   evicted  after every room left memory (--idle-timeout): loaded again
#   cold     after a restart of partyd on the same directory
#   warm     again, after the cold pass
# A pass over more than BENCH_CHUNK rooms runs as chunks of that many
# rooms, one after another (one client may hold only so many
# descriptors), each from a source address of its own (127.0.P.C: no
# TIME_WAIT ports are shared); its rate is all the rooms over the sum of
# the chunks' times. After the first warm pass it reads partyd's VmRSS
# and open descriptors: RSS per awake room is the growth since start-up
# over N (no connection open then; the rooms stay awake).
# Then the idle bytes per connection: BENCH_IDLE_CONNS idle WebSockets to
# one echo room of a fresh partyd, VmRSS growth over the connections; and
# the same against a uWebSockets echo server when BENCH_UWS names one
# built locally (its path; it must listen on 127.0.0.1:BENCH_UWS_PORT,
# default 9001, and accept any URL; nothing is fetched or built here).
# Prints a table and writes it into docs/benchmarks.md between the
# "lifecycle" markers.
#
# Environment: BENCH_ROOMS (default "1000 10000"), BENCH_PARTY (default
# counter; yjs: rooms with a file of their own, party_room_db), BENCH_DURABILITY
# (default full), BENCH_IDLE_TIMEOUT (seconds, default 5: long enough for
# the warm pass to find every room still loaded; a pass over 100,000
# rooms needs more, e.g. 120), BENCH_CHUNK (default 10000),
# BENCH_IDLE_CONNS (default 10000; 0 skips), BENCH_UWS, BENCH_UWS_PORT,
# BENCH_NO_DOC=1 (print only).
set -euo pipefail

bench_name=lifecycle.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sizes=${BENCH_ROOMS:-1000 10000}
durability=${BENCH_DURABILITY:-full}
idle_timeout=${BENCH_IDLE_TIMEOUT:-5}
chunk=${BENCH_CHUNK:-10000}
party=${BENCH_PARTY:-counter}
idle_conns=${BENCH_IDLE_CONNS:-10000}
uws=${BENCH_UWS:-}
uws_port=${BENCH_UWS_PORT:-9001}
command_line=$(bench_command lifecycle.sh BENCH_ROOMS BENCH_PARTY BENCH_DURABILITY BENCH_IDLE_TIMEOUT BENCH_CHUNK BENCH_IDLE_CONNS BENCH_UWS BENCH_UWS_PORT)
if [ -n "$uws" ] && [ ! -x "$uws" ]; then
    echo "$bench_name: BENCH_UWS=$uws is not an executable" >&2
    exit 2
fi

bench_build_release partyd wsbench
wsbench="$bench_build/bench/wsbench"
work=$(mktemp -d "$bench_build/lifecycle-XXXXXX")

cleanup() {
    bench_stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# The passes connect from 127.0.x.y source addresses (one per chunk),
# thousands of handshakes a second from each: all of 127/8 is exempt from
# the per-address limits, as the default 127.0.0.1 is.
start() {
    bench_start_partyd "$work/partyd.log" --data "$1" --durability "$durability" \
        --idle-timeout "$idle_timeout" --limit-exempt 127.0.0.0/8,::1
}

pass_no=0
# One pass over rooms l<N>-0 .. l<N>-(N-1) (chunked: l<N>c<J>-0 ..):
# handshakes/s. The caller counts the passes in pass_no (this runs in a
# subshell).
pass() {
    local n=$1 out json j=0 c secs=0 prefix
    while [ $((j * chunk)) -lt "$n" ]; do
        c=$((n - j * chunk < chunk ? n - j * chunk : chunk))
        prefix="l$n"
        if [ "$n" -gt "$chunk" ]; then
            prefix="l${n}c$j"
        fi
        out=$(bench_rooms_pass "$wsbench" "$port" "$party" "$prefix" "$c" \
            "127.0.$pass_no.$((j + 1))")
        json=$(grep '^{' <<<"$out")
        secs=$(awk -v s="$secs" -v c="$c" -v r="$(bench_field handshakes_per_s "$json")" \
            'BEGIN { print s + (r > 0 ? c / r : 0) }')
        if [ "$n" -gt "$chunk" ]; then
            bench_settle "$port"
        fi
        j=$((j + 1))
    done
    awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'
}

# Rooms in memory now (partyd_rooms_known{state="awake"}).
awake() {
    curl -s "http://127.0.0.1:$port/_partyd/metrics" |
        sed -n 's/^partyd_rooms_known{state="awake"} \([0-9]*\).*/\1/p'
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
    rss0=$(bench_rss_kb "$bench_server_pid")
    pass_no=$((pass_no + 1))
    new=$(pass "$n")
    bench_settle "$port"
    expect_awake "$n"
    pass_no=$((pass_no + 1))
    warm=$(pass "$n")
    bench_settle "$port"
    expect_awake "$n"
    rss=$(bench_rss_kb "$bench_server_pid")
    fds=$(find "/proc/$bench_server_pid/fd" -mindepth 1 | wc -l)
    per_room=$(awk -v a="$rss" -v b="$rss0" -v n="$n" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
    # Every room idle now: wait until all have left memory.
    for _ in $(seq $(((idle_timeout + 60) * 10))); do
        [ "$(awake)" = 0 ] && break
        sleep 0.1
    done
    if [ "$(awake)" != 0 ]; then
        echo "$bench_name: rooms still awake $((idle_timeout + 60)) s later" >&2
        exit 1
    fi
    pass_no=$((pass_no + 1))
    evicted=$(pass "$n")
    bench_stop_server
    start "$data"
    pass_no=$((pass_no + 1))
    cold=$(pass "$n")
    bench_settle "$port"
    expect_awake "$n"
    pass_no=$((pass_no + 1))
    warm_again=$(pass "$n")
    bench_stop_server
    echo "$n rooms: new $new, warm $warm, evicted and back $evicted, cold $cold, warm $warm_again;" \
        "RSS $rss KiB ($per_room B per awake room), $fds descriptors" >&2
    rows+="| $n | $new | $warm | $evicted | $cold | $warm_again | $((rss / 1024)) MiB | $per_room B | $fds |"$'\n'
done

# idle_bytes PID PORT PARTY: VmRSS growth of PID per connection while
# idle_conns WebSockets to one room are held.
idle_bytes() {
    local pid=$1 rss_before rss_held client out
    rss_before=$(bench_rss_kb "$pid")
    out="$work/idle-client.out"
    "$wsbench" idle --port "$2" --party "$3" --room-prefix idle --rooms 1 --conns "$idle_conns" \
        --duration 6 --connect-timeout 60 --source 127.0.250.1 >"$out" 2>&1 &
    client=$!
    bench_wait_holding "$out" "$client" 60
    sleep 2
    rss_held=$(bench_rss_kb "$pid")
    wait "$client" || true
    awk -v a="$rss_held" -v b="$rss_before" -v n="$idle_conns" \
        'BEGIN { printf "%.0f", (a - b) * 1024 / n }'
}

idle_line=""
if [ "$idle_conns" -gt 0 ]; then
    mkdir -p "$work/data-idle"
    # --idle-timeout 1: the eviction tick (a quarter of it, at most 5 s)
    # gives the handshakes' pools back once a tick saw no handshake; with
    # the passes' longer timeout they would still be held when the memory
    # is read, and counted as if each connection kept them.
    bench_start_partyd "$work/partyd.log" --data "$work/data-idle" --idle-timeout 1 \
        --limit-exempt 127.0.0.0/8,::1
    idle_partyd=$(idle_bytes "$bench_server_pid" "$port" echo)
    bench_stop_server
    idle_uws="not run (BENCH_UWS not given)"
    if [ -n "$uws" ]; then
        "$uws" >"$work/uws.log" 2>&1 &
        bench_server_pid=$!
        if ! bench_wait_port "$uws_port" 10; then
            echo "$bench_name: $uws does not listen on 127.0.0.1:$uws_port" >&2
            exit 1
        fi
        idle_uws="$(idle_bytes "$bench_server_pid" "$uws_port" echo) B"
        bench_stop_server
    fi
    idle_line="Idle WebSockets ($idle_conns to one echo room, VmRSS growth per connection while held):
partyd $idle_partyd B, uWebSockets $idle_uws."
    echo "$idle_line" >&2
fi

table="| rooms | new | warm | evicted, back | cold (after a restart) | warm | RSS after warm | per awake room | descriptors |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${rows%$'\n'}

$idle_line

Handshakes/s of one WebSocket to each \`$party\` room (\`wsbench idle --grouped\`),
\`--durability $durability\`, \`--idle-timeout $idle_timeout\`. partyd $(bench_revision), Release;
$(nproc) CPUs ($(bench_cpu_model)); $(date -u +%Y-%m-%d).

Command: \`$command_line\`"
echo "$table"
if [ "${BENCH_NO_DOC:-}" != 1 ]; then
    bench_write_doc lifecycle "Rooms coming into memory" "$table"
fi
