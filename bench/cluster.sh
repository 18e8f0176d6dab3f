#!/usr/bin/env bash
# cluster.sh: partyd on PostgreSQL, measured. Builds partyd and wsbench
# (Release, build/bench), starts a private PostgreSQL (tests/cluster/
# with_pg.sh, with fsync on) and measures:
#   1. the durable counter (every reply waits for its commit) through
#      HAProxy on 1 and on 3 nodes;
#   2. the PostgreSQL store against local SQLite (--durability full), one
#      partyd each, same shapes: 1 room x 16 connections, 100 rooms x 1;
#   3. failover timings over BENCH_FAILOVER_RUNS runs (default 5): a room
#      of node n2 asked through HAProxy every 20 ms from kill -9 (crash) or
#      SIGSTOP (hang) of n2 until it answers 200 from another node;
#   4. 20 kill -9 cycles under acknowledged writes with the cluster tests'
#      checker (tests/cluster/test_failover, from build/asan: configure
#      and build it first), which fails if a write was lost or a room was
#      served by two nodes;
#   5. rooms coming into memory, PostgreSQL against local SQLite, one
#      partyd each: one WebSocket to each of BENCH_STORE_ROOMS counter
#      rooms (`wsbench idle --grouped`, handshakes/s, as bench/lifecycle.sh
#      does), new (no record yet), then cold (their records there, after a
#      restart of partyd on the same store);
#   6. the takeover of BENCH_TAKEOVER_ROOMS rooms (default 10,000) after a
#      crash: one WebSocket to each, straight to node n1 of three, so n1
#      holds them all; kill -9 n1, then every room asked through HAProxy
#      (HTTP, 32 at a time, each again after 20 ms until it answers 200)
#      until all have answered from the other nodes.
# Parts 1-4 write the "cluster" markers of docs/benchmarks.md, parts 5-6
# the "cluster-rooms" markers, each only when all of its parts ran.
# Every node runs with --limit-exempt 127.0.0.0/8,::1: the passes of
# parts 5 and 6 connect from 127.0.x.y thousands of times a second (the
# nodes behind this HAProxy see it as 127.0.0.1: it sends no PROXY
# header, unlike examples/cluster).
# Environment: BENCH_PARTS (default "throughput failover kill rooms
# takeover": the parts run), BENCH_DURATION (seconds per throughput run,
# default 10), BENCH_WARMUP (default 2), BENCH_FAILOVER_RUNS (default 5),
# BENCH_KILL_CYCLES (default 20), BENCH_STORE_ROOMS (default 2000),
# BENCH_TAKEOVER_ROOMS (default 10000), BENCH_TAKEOVER_TIMEOUT (seconds
# for all rooms to answer again, default 120), BENCH_NO_DOC=1 (print
# only).
set -euo pipefail

bench_name=cluster.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ -z "${PARTYD_TEST_PG:-}" ]; then
    # Again, next to a private PostgreSQL that syncs its commits.
    export PARTYD_TEST_PG_FSYNC=on
    exec "$bench_root/tests/cluster/with_pg.sh" "$0" "$@"
fi

build=$bench_build
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
runs=${BENCH_FAILOVER_RUNS:-5}
cycles=${BENCH_KILL_CYCLES:-20}
parts=${BENCH_PARTS:-throughput failover kill rooms takeover}
store_rooms=${BENCH_STORE_ROOMS:-2000}
takeover_rooms=${BENCH_TAKEOVER_ROOMS:-10000}
takeover_timeout=${BENCH_TAKEOVER_TIMEOUT:-120}
command_line=$(bench_command cluster.sh BENCH_PARTS BENCH_DURATION BENCH_WARMUP \
    BENCH_FAILOVER_RUNS BENCH_KILL_CYCLES BENCH_STORE_ROOMS BENCH_TAKEOVER_ROOMS \
    BENCH_TAKEOVER_TIMEOUT)
for part in $parts; do
    case $part in
    throughput | failover | kill | rooms | takeover) ;;
    *)
        echo "cluster.sh: BENCH_PARTS: no part '$part' (throughput failover kill rooms takeover)" >&2
        exit 2
        ;;
    esac
done
runs_part() { [[ " $parts " == *" $1 "* ]]; }
command -v haproxy >/dev/null || { echo "cluster.sh: needs haproxy (scripts/deps.sh --test)" >&2; exit 1; }

bench_build_release partyd wsbench
work=$(mktemp -d "$build/cluster-XXXXXX")
pids=()
haproxy_pid=""

cleanup() {
    local p
    if [ -n "$haproxy_pid" ]; then kill "$haproxy_pid" 2>/dev/null || true; fi
    for p in "${pids[@]}"; do
        kill -CONT "$p" 2>/dev/null || true
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        timeout 20 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A new database on the private server: its URI. (Called in $(...), a
# subshell: the name cannot come from a counter.)
new_db() {
    local name
    name=b$(date +%s%N)
    "$PARTYD_TEST_PG_BIN/psql" -q -d "$PARTYD_TEST_PG" -c "CREATE DATABASE $name" >/dev/null
    echo "${PARTYD_TEST_PG%/*}/$name"
}

# start_node NAME PORT STORE: a node in the background, its pid in
# node_pid; waits for its "listening on" line. STORE "sqlite": local
# SQLite in its data directory (--durability full), no cluster.
start_node() {
    local name=$1 p=$2 store=$3 log="$work/$1.log" args
    mkdir -p "$work/$name"
    : >"$log"
    args=(--store "$store" --node "$name")
    if [ "$store" = sqlite ]; then
        args=(--durability full)
    fi
    "$build/partyd" --port "$p" --data "$work/$name" "${args[@]}" --builtins all \
        --limit-exempt 127.0.0.0/8,::1 >/dev/null 2>"$log" &
    node_pid=$!
    pids+=("$node_pid")
    for _ in $(seq 200); do
        grep -q "listening on" "$log" && return 0
        sleep 0.05
    done
    echo "cluster.sh: node $name did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop_pid() {
    kill -CONT "$1" 2>/dev/null || true
    kill "$1" 2>/dev/null || true
    timeout 20 tail --pid="$1" -f /dev/null 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
}

# start_haproxy PORT...: HAProxy in front of those node ports (the routing
# of examples/cluster/haproxy.cfg); sets entry.
start_haproxy() {
    local i=0 p
    entry=$(free_port)
    {
        printf 'global\n    maxconn 4000\ndefaults\n    mode http\n    timeout connect 2s\n'
        printf '    timeout client 30s\n    timeout server 30s\n    timeout tunnel 1h\n'
        printf '    timeout check 1s\nfrontend entry\n    bind 127.0.0.1:%s\n' "$entry"
        printf '    http-request set-var(txn.room) path,field(4,/),url_dec\n'
        printf '    http-request set-var(txn.key) path,field(3,/),lower,concat(/,txn.room)\n'
        printf '    default_backend partyd\nbackend partyd\n    balance hash var(txn.key)\n'
        printf '    hash-type consistent\n    option httpchk GET /_partyd/health\n'
        printf '    http-check expect status 200\n    option redispatch 1\n    retries 2\n'
        printf '    default-server inter 500ms fastinter 250ms downinter 1s fall 2 rise 2'
        printf ' weight 100 on-marked-down shutdown-sessions\n'
        for p in "$@"; do
            i=$((i + 1))
            printf '    server n%d 127.0.0.1:%s id %d check\n' "$i" "$p" "$i"
        done
    } >"$work/haproxy.cfg"
    haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>&1 &
    haproxy_pid=$!
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$entry/_partyd/health")" = 200 ] && return 0
        sleep 0.05
    done
    echo "cluster.sh: haproxy did not come up" >&2
    exit 1
}

stop_haproxy() {
    stop_pid "$haproxy_pid"
    haproxy_pid=""
}

failed=0
# counter PORT ROOMS CONNS PREFIX: msgs/s | p50 | p99 | errors, one row tail.
counter() {
    local out json
    out=$("$build/bench/wsbench" counter --port "$1" --rooms "$2" --conns "$3" --inflight 1 \
        --size 16 --duration "$duration" --warmup "$warmup" --room-prefix "$4") || failed=1
    sed -n 1p <<<"$out" >&2
    json=$(grep '^{' <<<"$out")
    printf '%.0f | %.2f | %.2f | %d' "$(bench_field msgs_per_s "$json")" \
        "$(awk -v us="$(bench_field p50_us "$json")" 'BEGIN { print us / 1000 }')" \
        "$(awk -v us="$(bench_field p99_us "$json")" 'BEGIN { print us / 1000 }')" \
        "$(($(bench_field errors "$json") + $(bench_field unanswered "$json")))"
}

# ---- 1. through HAProxy, 1 and 3 nodes ----
rows_haproxy=""
rows_store=""
if runs_part throughput; then
    for n in 1 3; do
        store=$(new_db)
        ports=()
        node_pids=()
        for i in $(seq "$n"); do
            ports+=("$(free_port)")
            start_node "n$i" "${ports[-1]}" "$store"
            node_pids+=("$node_pid")
        done
        start_haproxy "${ports[@]}"
        rows_haproxy+="| $n | 1 room × 16 connections | $(counter "$entry" 1 16 "h${n}a") |"$'\n'
        rows_haproxy+="| $n | 100 rooms × 1 connection | $(counter "$entry" 100 100 "h${n}b") |"$'\n'
        stop_haproxy
        for p in "${node_pids[@]}"; do stop_pid "$p"; done
    done

    # ---- 2. PostgreSQL against local SQLite, one partyd, no HAProxy ----
    for store in postgres sqlite; do
        p=$(free_port)
        if [ "$store" = postgres ]; then
            start_node solo "$p" "$(new_db)"
        else
            start_node sqlite "$p" sqlite
        fi
        rows_store+="| $store | 1 room × 16 connections | $(counter "$p" 1 16 "s${store}a") |"$'\n'
        rows_store+="| $store | 100 rooms × 1 connection | $(counter "$p" 100 100 "s${store}b") |"$'\n'
        stop_pid "$node_pid"
    done
fi

# ---- 3. failover timings ----
now_ms() { date +%s%3N; }
declare -A node_of
# start_cluster: three nodes on a new database (store; node_of[nI], ports) and
# HAProxy in front (entry).
start_cluster() {
    local i
    store=$(new_db)
    ports=("$(free_port)" "$(free_port)" "$(free_port)")
    for i in 1 2 3; do
        start_node "n$i" "${ports[$((i - 1))]}" "$store"
        node_of[n$i]=$node_pid
    done
    start_haproxy "${ports[@]}"
}
stop_cluster() {
    local i
    stop_haproxy
    for i in 1 2 3; do stop_pid "${node_of[n$i]}"; done
}

# A room that node n2 serves (named by its answer's X-Partyd-Node).
room_on_n2() {
    local i node
    for i in $(seq 500); do
        node=$(curl -s -D - -o /dev/null "http://127.0.0.1:$entry/parties/counter/$1-$i" |
            tr -d '\r' | awk -F': ' 'tolower($1) == "x-partyd-node" { print $2 }')
        [ "$node" = n2 ] && { echo "$1-$i"; return 0; }
    done
    echo "cluster.sh: no room went to n2; its health says: $(curl -s -m 1 "http://127.0.0.1:${ports[1]}/_partyd/health")" >&2
    return 1
}

# Asks for the room through the entry until it answers 200: the ms since $2.
until_served() {
    local code
    while :; do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$entry/parties/counter/$1" || true)
        [ "$code" = 200 ] && break
        sleep 0.02
    done
    echo $(($(now_ms) - $2))
}

# Waits until node n2 (port) says it is healthy and HAProxy routes to it.
until_n2_back() {
    for _ in $(seq 600); do
        [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:${ports[1]}/_partyd/health")" = 200 ] && break
        sleep 0.05
    done
    sleep 1.5 # HAProxy's rise 2 x inter 500 ms: no event to wait on from here
}

crash=()
hang=()
if runs_part failover; then
    start_cluster
    for run in $(seq "$runs"); do
        room=$(room_on_n2 "crash$run")
        kill -KILL "${node_of[n2]}"
        t0=$(now_ms)
        crash+=("$(until_served "$room" "$t0")")
        wait "${node_of[n2]}" 2>/dev/null || true
        start_node n2 "${ports[1]}" "$store"
        node_of[n2]=$node_pid
        until_n2_back

        room=$(room_on_n2 "hang$run")
        kill -STOP "${node_of[n2]}"
        t0=$(now_ms)
        hang+=("$(until_served "$room" "$t0")")
        kill -CONT "${node_of[n2]}"
        until_n2_back
    done
    stop_cluster
fi

stats() { # values -> "median | max"
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%d | %d", m, v[NR] }'
}

# ---- 4. kill -9 cycles with the checker ----
checker="$bench_root/build/asan/tests/cluster/test_failover"
kill_line="not run: build $checker first (the ASan build of the tests)"
if runs_part kill && [ -x "$checker" ]; then
    if out=$(FAILOVER_ONLY_KILL=1 FAILOVER_KILL_CYCLES=$cycles "$checker" 2>&1); then
        kill_line=$(grep -m1 -o 'kill cycles.*' <<<"$out")
    else
        echo "$out" >&2
        kill_line="FAILED: $(grep -m1 -o 'checker: .*' <<<"$out" || echo 'see the output above')"
        failed=1
    fi
fi

# ---- 5. new and cold rooms, PostgreSQL against local SQLite ----
wsbench="$build/bench/wsbench"
pass_no=0
# rooms_pass PORT PREFIX: handshakes/s of one WebSocket to each of
# store_rooms counter rooms PREFIX-0 .., one after another, from a source
# address of its own (no TIME_WAIT port shared with another pass). The
# caller counts the passes in pass_no (this runs in a subshell); a pass
# with a failed connection prints "failed" instead.
rooms_pass() {
    local out json
    out=$(bench_rooms_pass "$wsbench" "$1" counter "$2" "$store_rooms" "127.0.$pass_no.1") ||
        { echo "$out" >&2; echo failed; return 0; }
    sed -n 1p <<<"$out" >&2
    json=$(grep '^{' <<<"$out")
    if [ "$(bench_field errors "$json")" != 0 ]; then
        echo "$out" >&2
        echo failed
        return 0
    fi
    printf '%.0f' "$(bench_field handshakes_per_s "$json")"
}

rows_rooms=""
if runs_part rooms; then
    for store in postgres sqlite; do
        p=$(free_port)
        if [ "$store" = postgres ]; then
            where=$(new_db)
        else
            where=sqlite
        fi
        start_node "rooms-$store" "$p" "$where"
        pass_no=$((pass_no + 1))
        new=$(rooms_pass "$p" "r$store")
        bench_settle "$p"
        stop_pid "$node_pid"
        start_node "rooms-$store" "$p" "$where"
        pass_no=$((pass_no + 1))
        cold=$(rooms_pass "$p" "r$store")
        bench_settle "$p"
        stop_pid "$node_pid"
        echo "$store: new $new rooms/s, cold $cold rooms/s" >&2
        if [ "$new" = failed ] || [ "$cold" = failed ]; then failed=1; fi
        rows_rooms+="| $store | $new | $cold |"$'\n'
    done
fi

# ---- 6. takeover of a crashed node's rooms ----
# takeover PID PORT PREFIX N TIMEOUT: kill -9 PID, then asks rooms PREFIX-0
# .. PREFIX-(N-1) through 127.0.0.1:PORT, 32 at a time on kept-alive
# connections, each again 20 ms after an answer other than 200, until all
# answered 200 or TIMEOUT s passed. Prints "answered first_ms median_ms
# last_ms", times from the kill.
takeover() {
    python3 - "$@" <<'PY'
import http.client, os, signal, sys, threading, time
pid, port, prefix, n, timeout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
lock = threading.Lock()
todo = list(range(n - 1, -1, -1))
done = []
os.kill(pid, signal.SIGKILL)
t0 = time.monotonic()
deadline = t0 + timeout
def worker():
    conn = None
    while True:
        with lock:
            if not todo:
                return
            room = todo.pop()
        while time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/parties/counter/%s-%d" % (prefix, room))
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    with lock:
                        done.append(time.monotonic() - t0)
                    if r.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.02)
        else:
            return
threads = [threading.Thread(target=worker) for _ in range(32)]
for t in threads:
    t.start()
for t in threads:
    t.join()
done.sort()
ms = lambda s: round(s * 1000)
print(len(done), ms(done[0]) if done else 0, ms(done[len(done) // 2]) if done else 0, ms(done[-1]) if done else 0)
PY
}

# Rooms node PORT holds in memory now.
awake_on() {
    curl -s "http://127.0.0.1:$1/_partyd/metrics" |
        sed -n 's/^partyd_rooms_known{state="awake"} \([0-9]*\).*/\1/p'
}

takeover_line=""
if runs_part takeover; then
    start_cluster
    # One WebSocket to each room, straight to n1: n1 acquires them all.
    hold="$work/takeover-hold.out"
    "$wsbench" idle --port "${ports[0]}" --party counter --room-prefix take --rooms "$takeover_rooms" \
        --grouped --conns "$takeover_rooms" --duration 600 --connect-timeout 120 \
        --source 127.0.250.1 >"$hold" 2>&1 &
    holder=$!
    bench_wait_holding "$hold" "$holder" 240
    held=$(awake_on "${ports[0]}")
    if [ "$held" != "$takeover_rooms" ]; then
        cat "$hold" >&2
        echo "cluster.sh: n1 holds $held rooms, not $takeover_rooms" >&2
        exit 1
    fi
    read -r answered first median last < <(takeover "${node_of[n1]}" "$entry" take "$takeover_rooms" \
        "$takeover_timeout")
    wait "${node_of[n1]}" 2>/dev/null || true
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    on2=$(awake_on "${ports[1]}")
    on3=$(awake_on "${ports[2]}")
    stop_cluster
    if [ "$answered" != "$takeover_rooms" ]; then
        echo "cluster.sh: $answered of $takeover_rooms rooms answered within $takeover_timeout s" >&2
        failed=1
    fi
    rate=$(awk -v n="$answered" -v ms="$last" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
    echo "takeover: $answered rooms answered, first $first ms, half $median ms, last $last ms, $rate rooms/s; n2 $on2, n3 $on3" >&2
    takeover_line="| $takeover_rooms | $answered | $first | $median | $last | $rate | $on2 / $on3 |"
fi

cpu=$(bench_cpu_model)
revision=$(bench_revision)
pgversion=$("$PARTYD_TEST_PG_BIN/postgres" --version)
# sed reads all: head would leave haproxy a closed pipe (SIGPIPE, pipefail).
hversion=$(haproxy -v | sed -n 1p)
machine="Machine: $(nproc) CPUs ($cpu), $(uname -sr). partyd $revision, Release build;
$pgversion (fsync on, synchronous_commit on), $hversion; all on loopback;
$(date -u +%Y-%m-%d)."
table=""
if runs_part throughput && runs_part failover && runs_part kill; then
    table="Durable counter through HAProxy (wsbench counter, 1 in flight per connection):

| nodes | shape | msgs/s | p50 ms | p99 ms | errors |
|---|---|---:|---:|---:|---|
$rows_haproxy
PostgreSQL store against local SQLite (\`--durability full\`), one partyd, no HAProxy:

| store | shape | msgs/s | p50 ms | p99 ms | errors |
|---|---|---:|---:|---:|---|
$rows_store
Failover, $runs runs each: from the fault on n2 to the first 200 from another node
for a room n2 served, asked through HAProxy every 20 ms:

| fault | each run, ms | median ms | max ms |
|---|---|---:|---:|
| crash (kill -9) | ${crash[*]} | $(stats "${crash[@]}") |
| hang (SIGSTOP) | ${hang[*]} | $(stats "${hang[@]}") |

$cycles kill -9 cycles under acknowledged writes (tests/cluster/test_failover, ASan
build, 24 counter rooms, 3 nodes, checked by tests/cluster/history.c): $kill_line.

$machine Throughput runs: ${warmup} s warm-up, ${duration} s measured.
Command: \`$command_line\`"
    printf '\n%s\n' "$table"
fi
rooms_table=""
if runs_part rooms && runs_part takeover; then
    rooms_table="Rooms coming into memory, one partyd each, no HAProxy: one WebSocket to each of
$store_rooms counter rooms (\`wsbench idle --grouped\`, rooms/s), new (no record yet),
then cold (their records there, after a restart of partyd on the same store):

| store | new rooms/s | cold rooms/s |
|---|---:|---:|
${rows_rooms%$'\n'}

Takeover after a crash: one WebSocket to each room straight to n1 of three nodes (n1
holds them all), kill -9 n1, then every room asked through HAProxy (HTTP, 32 at a
time, each again 20 ms after an answer other than 200); times from the kill:

| rooms held by n1 | answered | first ms | half ms | last ms | rooms/s (to the last) | rooms on n2 / n3 after |
|---:|---:|---:|---:|---:|---:|---|
$takeover_line

$machine
Command: \`$command_line\`"
    printf '\n%s\n' "$rooms_table"
fi
if [ -z "$table$rooms_table" ]; then
    printf '\n%s\n' "$rows_haproxy$rows_store${crash[*]} ${hang[*]} $kill_line
$rows_rooms$takeover_line"
fi
if [ "$failed" != 0 ]; then
    echo "cluster.sh: a run reported errors; docs/benchmarks.md left alone" >&2
    exit 1
fi
if [ "${BENCH_NO_DOC:-}" = 1 ]; then
    exit 0
fi
if [ -n "$table" ]; then
    bench_write_doc cluster "Cluster: PostgreSQL, HAProxy, failover" "$table"
fi
if [ -n "$rooms_table" ]; then
    bench_write_doc cluster-rooms "Cluster: rooms coming into memory, takeover" "$rooms_table"
fi
