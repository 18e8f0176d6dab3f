#!/usr/bin/env bash
# idle.sh: what an idle WebSocket connection costs partyd in memory. Builds
# partyd and wsbench (Release, build/bench) and the probe test party. For
# each room state (hibernated: probe as a hibernating party; awake: as one
# that never hibernates) and each shape (R rooms, N connections) it starts
# a fresh partyd, reads its anonymous memory and VmRSS, opens N connections
# with `wsbench idle` and holds them silent, waits until every room has
# hibernated with all its connections (awake: until the handshakes are
# over), reads the memory again, and once more after the clients closed
# and the rooms left memory. Prints a table
# (bytes per connection; the marginal cost between consecutive N of a room
# count) and writes it, with the machine it ran on, into docs/benchmarks.md
# between the "idle" markers.
#
# The open-file limit (20000 per process, hard, on the machine of record)
# bounds N: partyd keeps a tenth of it for other files, so at most 18000
# connections. A loaded room holds 3 files too: with BENCH_ORDER=spread all
# 1000 rooms are loaded during the connect burst and only about 16900
# connections fit; grouped, only the rooms being joined are.
#
# Environment: BENCH_STATES (room states measured, default "hibernated
# awake"), BENCH_SHAPES (rooms, a colon, connection counts; default
# "1:5000,10000,18000 1000:5000,10000,18000"), BENCH_RUNS (runs per shape,
# default 3; the table shows the median), BENCH_ORDER (grouped: each
# room's connections open one after another, so a room is loaded once;
# spread: connection k to room k mod R, so with 1000 rooms a room may
# hibernate between two of its connections and load again; default
# grouped), BENCH_HOLD (seconds each
# client holds its connections, default 10), BENCH_CLIENTS (wsbench
# processes sharing the N connections, default 2, more if one would need
# more files than it may open; client i connects from 127.0.0.(i+1); the
# same count for every N, so the marginal cost compares like with like),
# BENCH_DATA_PARENT (where the work directory is made;
# default build/bench), BENCH_NO_DOC=1 (print only).
set -euo pipefail

bench_name=idle.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$bench_root
build=$bench_build
shapes=${BENCH_SHAPES:-1:5000,10000,18000 1000:5000,10000,18000}
states=${BENCH_STATES:-hibernated awake}
for state in $states; do
    case $state in
    hibernated | awake) ;;
    *)
        echo "idle.sh: BENCH_STATES holds hibernated and/or awake" >&2
        exit 2
        ;;
    esac
done
hold=${BENCH_HOLD:-10}
runs=${BENCH_RUNS:-3}
order=${BENCH_ORDER:-grouped}
case $order in
grouped) order_flag=(--grouped) ;;
spread) order_flag=() ;;
*)
    echo "idle.sh: BENCH_ORDER is grouped or spread" >&2
    exit 2
    ;;
esac
clients_wanted=${BENCH_CLIENTS:-2}
# Connections one client may hold: its open-file limit, less some spare.
client_max=$(($(ulimit -Hn) - 100))
data_parent=${BENCH_DATA_PARENT:-$build}
command_line=$(bench_command idle.sh BENCH_STATES BENCH_SHAPES BENCH_RUNS BENCH_ORDER BENCH_HOLD BENCH_CLIENTS BENCH_DATA_PARENT)

bench_build_release partyd wsbench

mkdir -p "$data_parent"
work=$(mktemp -d "$data_parent/idle-XXXXXX")
cc -O2 -shared -fPIC -I "$root/include" "$root/tests/integration/probe_party.c" -o "$work/probe.so"
log="$work/partyd.log"
client_pids=()

# Stops the wsbench clients this script started that still run.
stop_clients() {
    local pid
    for pid in "${client_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    client_pids=()
}

cleanup() {
    stop_clients
    bench_stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a fresh partyd (probe hibernating after 1 s of quiet when $1 is
# hibernated, else never; rooms with no connection evicted after 1 s) on
# its own data directory and sets $port from its "listening on" line
# (waiting at most 10 s). The clients connect from 127.0.0.2 and up, each
# opening thousands of connections a second: exempt from the per-address
# limits (--limit-exempt), as the default 127.0.0.1 is.
start_partyd() {
    local args=(--data "$work/data" --party "probe=$work/probe.so" --hibernate-after 1
        --idle-timeout 1 --log-level debug --limit-exempt 127.0.0.0/8,::1)
    rm -rf "$work/data"
    if [ "$1" = hibernated ]; then
        PARTYD_PROBE_HIBERNATE=1 bench_start_partyd "$log" "${args[@]}"
    else
        bench_start_partyd "$log" "${args[@]}"
    fi
}

anon_kb() { bench_anon_kb "$bench_server_pid"; }
rss_kb() { bench_rss_kb "$bench_server_pid"; }

field() { bench_field "$@"; }

# Rooms whose last hibernation or eviction line in partyd's log is $1
# ("hibernated" or "evicted"), and (for "hibernated") the connections they
# hibernated with, summed: "ROOMS CONNECTIONS".
rooms_in() {
    awk -v what="$1" '
        / debug room probe\// && /: (hibernated with [0-9]+ connections|evicted)$/ {
            name = $4; sub(/:$/, "", name)
            last[name] = ($5 == "hibernated") ? "hibernated " $7 : "evicted"
        }
        END {
            n = 0; conns = 0
            for (r in last) {
                split(last[r], f, " ")
                if (f[1] == what) { n++; conns += f[2] }
            }
            print n, conns
        }' "$log"
}

# Waits (at most $3 s) until $1 rooms' last line is "hibernated" with $2
# connections in all, or (with $1 "evicted") until $2 rooms were evicted.
wait_rooms() {
    local what=$1 want_rooms=$2 want_conns=$3 limit=$4 got
    for _ in $(seq $((limit * 10))); do
        got=$(rooms_in "$what")
        if [ "$what" = evicted ] && [ "${got% *}" = "$want_rooms" ]; then
            return 0
        fi
        if [ "$what" = hibernated ] && [ "$got" = "$want_rooms $want_conns" ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "idle.sh: after ${limit} s, rooms $what (rooms, connections): $got; wanted" \
        "$want_rooms $want_conns" >&2
    return 1
}

per_conn() { # per_conn KIB_AFTER KIB_BEFORE N -> bytes per connection
    awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }'
}

# One run: a fresh partyd, N idle connections over R rooms in state S
# (hibernated or awake). Sets m_valid
# (0: not measured), m_opened, m_fails (failed or dropped connections),
# m_hs (handshakes/s), m_anon0, m_anon1, m_anon2 (anonymous KiB before,
# held, after close; m_anon2 empty if the rooms did not leave memory),
# m_rss0, m_rss1 (VmRSS KiB before, held).
measure() {
    local rooms=$1 n=$2 state=$3 clients i c pid status connect_s out json held_at
    start_partyd "$state"
    m_anon0=$(anon_kb)
    m_rss0=$(rss_kb)
    # Clients from their own source addresses; they all address the same
    # rooms room-0 .. room-(rooms-1).
    clients=$clients_wanted
    if [ $(((n + clients - 1) / clients)) -gt "$client_max" ]; then
        clients=$(((n + client_max - 1) / client_max))
    fi
    client_pids=()
    for i in $(seq 0 $((clients - 1))); do
        c=$((n / clients + (i < n % clients ? 1 : 0)))
        "$build/bench/wsbench" idle --port "$port" --party probe --room-prefix room \
            --rooms "$rooms" "${order_flag[@]}" --conns "$c" --duration "$hold" \
            --connect-timeout 60 --source "127.0.0.$((i + 1))" \
            >"$work/client-$i.out" 2>"$work/client-$i.err" &
        client_pids+=($!)
    done
    # Every client holding its connections (or gone).
    for i in $(seq 0 $((clients - 1))); do
        bench_wait_holding "$work/client-$i.out" "${client_pids[$i]}" 70
    done
    held_at=$(date +%s.%N)
    m_opened=$(cat "$work"/client-*.out | sed -n 's/^wsbench idle: holding \([0-9]*\) .*/\1/p' |
        awk '{ s += $1 } END { print s + 0 }')
    m_valid=1
    if [ "$state" = hibernated ]; then
        wait_rooms hibernated "$rooms" "$m_opened" 30 || m_valid=0
    fi
    # At least 2 s after the last handshake, and four eviction ticks
    # (250 ms each) after the last hibernation: partyd returns freed pages
    # to the system (malloc_trim) on the tick after rooms leave memory, or
    # after a burst of handshakes.
    sleep 1
    while awk -v t0="$held_at" -v t="$(date +%s.%N)" 'BEGIN { exit !(t - t0 < 2) }'; do
        sleep 0.1
    done
    m_anon1=$(anon_kb)
    m_rss1=$(rss_kb)
    for pid in "${client_pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "idle.sh: a client ended before the memory was read (raise BENCH_HOLD)" >&2
            m_valid=0
        fi
    done
    status=0
    for pid in "${client_pids[@]}"; do
        wait "$pid" || status=1
    done
    client_pids=()
    cat "$work"/client-*.err >&2
    connect_s=0
    m_fails=0
    for i in $(seq 0 $((clients - 1))); do
        out=$(cat "$work/client-$i.out")
        echo "$out" | grep '^wsbench idle: [0-9]' >&2 || true
        json=$(grep '^{' <<<"$out") || {
            m_valid=0
            continue
        }
        m_fails=$((m_fails + $(field failed "$json") + $(field dropped "$json")))
        connect_s=$(awk -v a="$connect_s" -v b="$(field connect_s "$json")" \
            'BEGIN { if (b > a) a = b; print a }')
    done
    rm -f "$work"/client-*
    if [ "$status" != 0 ] || [ "$m_fails" != 0 ]; then
        echo "idle.sh: $rooms rooms x $n: $m_fails connections failed or were dropped" >&2
    fi
    # The clients ran at once: every handshake over the slowest one's time.
    m_hs=$(awk -v n="$m_opened" -v s="$connect_s" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }')
    # The clients closed every connection; the rooms woke for the close
    # events and then left memory (--idle-timeout 1).
    m_anon2=""
    if wait_rooms evicted "$rooms" 0 60; then
        sleep 1
        m_anon2=$(anon_kb)
    fi
    bench_stop_server
    # What partyd warned about (refused connections, say).
    grep -E '^[^ ]+ (warn|error) ' "$log" >&2 || true
    if [ "$m_opened" = 0 ]; then
        m_valid=0
    fi
    printf 'idle.sh: %s, %s rooms x %s: %s opened; anon %s -> %s -> %s KiB, VmRSS %s -> %s KiB\n' \
        "$state" "$rooms" "$n" "$m_opened" "$m_anon0" "$m_anon1" "${m_anon2:-?}" "$m_rss0" "$m_rss1" >&2
}

rows=""
marginal_rows=""
failed=0
for state in $states; do
    for shape in $shapes; do
        rooms=${shape%%:*}
        prev_n=""
        prev_anon=""
        prev_rss=""
        IFS=, read -r -a counts <<<"${shape#*:}"
        for n in "${counts[@]}"; do
            # Each shape $runs times, on a fresh partyd each time; the row is
            # the run with the median anonymous bytes per connection.
            results=""
            fails=0
            for _ in $(seq "$runs"); do
                measure "$rooms" "$n" "$state"
                fails=$((fails + m_fails))
                if [ "$m_valid" = 0 ]; then
                    failed=1
                    continue
                fi
                results+="$(per_conn "$m_anon1" "$m_anon0" "$m_opened") $m_opened $m_hs $m_anon0"
                results+=" $m_anon1 ${m_anon2:-?} $m_rss0 $m_rss1"$'\n'
            done
            if [ "$fails" != 0 ]; then
                failed=1
            fi
            if [ -z "$results" ]; then
                rows+="| $state | $rooms | $n | (not measured: see stderr) | | | | | | | | |"$'\n'
                prev_n=""
                continue
            fi
            sorted=$(sort -n <<<"${results%$'\n'}")
            all=$(awk '{ print $1 }' <<<"$sorted" | tr '\n' ' ' | sed 's/ $//; s/ /, /g')
            read -r per opened hs anon0 anon1 anon2 rss0 rss1 \
                <<<"$(sed -n "$((($(wc -l <<<"$sorted") + 1) / 2))p" <<<"$sorted")"
            rows+="| $state | $rooms | $n | $opened | $fails | $hs | $anon0 → $anon1 | **$per** | $all |"
            rows+=" $rss0 → $rss1 | $(per_conn "$rss1" "$rss0" "$opened") | $anon2 |"$'\n'
            if [ -n "$prev_n" ]; then
                marginal_rows+="| $state | $rooms | $prev_n → $opened |"
                marginal_rows+=" **$(per_conn "$anon1" "$prev_anon" $((opened - prev_n)))** |"
                marginal_rows+=" $(per_conn "$rss1" "$prev_rss" $((opened - prev_n))) |"$'\n'
            fi
            prev_n=$opened
            prev_anon=$anon1
            prev_rss=$rss1
        done
    done
done

cpu=$(bench_cpu_model)
mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
libc=$(getconf GNU_LIBC_VERSION 2>/dev/null || echo "libc unknown")
revision=$(bench_revision)
table="| room | rooms | connections | opened | failed | handshakes/s | anonymous KiB (before → held) | anon B/conn | anon B/conn, each run | VmRSS KiB (before → held) | RSS B/conn | anon KiB after close |
|---|---:|---:|---:|---:|---:|---|---:|---|---|---:|---:|
$rows
Marginal cost of a connection, between the median runs of consecutive N
(fixed costs cancel out):

| room | rooms | connections | anon B/conn | RSS B/conn |
|---|---:|---|---:|---:|
$marginal_rows"
machine="Machine: $(nproc) CPUs ($cpu), $mem, $(uname -sr), $libc;
open files limited to $(ulimit -Hn) per process (hard limit).
partyd $revision, Release build; $(date -u +%Y-%m-%d).
Each shape run ${runs} times, each run on a fresh partyd: probe party hibernating
after 1 s (room \"hibernated\") or never (\"awake\"), connections opened $order by
room and held ${hold} s by ${clients_wanted} \`wsbench idle\` clients, memory read
once every room hibernated (awake: 2 s after the last handshake).
Command: \`$command_line\`"

printf '\n%s\n%s\n' "$table" "$machine"

if [ "$failed" != 0 ]; then
    echo "idle.sh: a run could not be measured, or connections failed; docs/benchmarks.md" \
        "left alone" >&2
    exit 1
fi
if [ "${BENCH_NO_DOC:-}" = 1 ]; then
    exit 0
fi

bench_write_doc idle "Idle connections" "$table
$machine"
