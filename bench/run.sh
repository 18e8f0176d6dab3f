#!/usr/bin/env bash
# run.sh: partyd side by side with what users would pick otherwise, in one
# run on one machine: PartyServer on workerd (bench/baselines/workerd) and
# a node ws server (bench/baselines/node-ws). Builds partyd and wsbench
# (Release, build/bench), installs the baselines (npm ci, pinned by
# bench/baselines/package-lock.json), then runs each scenario against each
# server in turn, each run on a freshly started server:
#   echo      100 connections in 1 room, 1 and 8 in flight, 32 B
#   echo      100 rooms x 10 connections, 1 in flight, 32 B
#   broadcast 1 room x 1000 connections (1 sender, window of 16), 32 B
#   idle      10000 connections held silent: server RSS per connection
#   connect   50 handshakes under way at once: handshakes/s
#   counter   10 rooms x 10 connections, 1 in flight: every message a write
#             (not on node ws: it has no storage)
# partyd runs with its defaults, so with one event loop per core.
# Prints the figures and the ratios partyd / baseline, and writes them,
# with the machine and the command, into docs/benchmarks.md between the
# "compare" markers.
#
# Options: --quick (1 s per scenario, 1000 idle connections: a smoke run
# of the whole script, under a minute), --servers LIST (comma-separated
# of partyd, workerd, node; default all), --no-doc (print only).
# Environment: BENCH_DURATION, BENCH_WARMUP (seconds per run; default 10
# and 2), BENCH_DATA_PARENT (where the work directory is made; default
# build/bench).
set -euo pipefail

bench_name=run.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

quick=0
write_doc=1
servers="partyd,workerd,node"
command_line=$(bench_command run.sh BENCH_DURATION BENCH_WARMUP BENCH_DATA_PARENT)
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --no-doc) write_doc=0 ;;
    --servers)
        servers=${2:?--servers needs a list}
        command_line+=" --servers"
        shift
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    command_line+=" $1"
    shift
done
IFS=, read -r -a server_list <<<"$servers"
for s in "${server_list[@]}"; do
    case $s in
    partyd | workerd | node) ;;
    *)
        echo "run.sh: --servers: $s is not partyd, workerd or node" >&2
        exit 2
        ;;
    esac
done

if [ "$quick" = 1 ]; then
    duration=${BENCH_DURATION:-1}
    warmup=${BENCH_WARMUP:-0.5}
    idle_conns=1000
    idle_settle=1
else
    duration=${BENCH_DURATION:-10}
    warmup=${BENCH_WARMUP:-2}
    idle_conns=10000
    idle_settle=3
fi

baselines="$bench_root/bench/baselines"
wsbench="$bench_build/bench/wsbench"
workerd_bin="$baselines/node_modules/.bin/workerd"

bench_build_release partyd wsbench
if [[ " ${server_list[*]} " == *" workerd "* || " ${server_list[*]} " == *" node "* ]]; then
    if [ ! -d "$baselines/node_modules" ] ||
        [ "$baselines/package-lock.json" -nt "$baselines/node_modules/.package-lock.json" ]; then
        (cd "$baselines" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
    (cd "$baselines/workerd" && ../node_modules/.bin/esbuild worker.js --bundle --format=esm \
        --platform=browser --conditions=workerd,worker --external:'cloudflare:*' \
        --log-level=warning --outfile=dist/worker.js) >&2
fi

data_parent=${BENCH_DATA_PARENT:-$bench_build}
mkdir -p "$data_parent"
work=$(mktemp -d "$data_parent/run-XXXXXX")
client_pid=""
cleanup() {
    if [ -n "$client_pid" ]; then
        kill -TERM "$client_pid" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    bench_stop_server
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a fresh server of kind $1 on its own data directory; sets $port
# and bench_server_pid (for workerd, the workerd process itself).
runs=0
start() {
    local dir="$work/$1-$runs"
    runs=$((runs + 1))
    mkdir -p "$dir"
    case $1 in
    partyd) bench_start_partyd "$dir/log" --data "$dir" ;;
    node) bench_start_server "$dir/log" node "$baselines/node-ws/server.mjs" 0 ;;
    workerd)
        port=$(bench_free_port)
        "$workerd_bin" serve "$baselines/workerd/config.capnp" \
            --socket-addr "http=127.0.0.1:$port" --directory-path "do-storage=$dir" \
            >/dev/null 2>"$dir/log" &
        bench_server_pid=$!
        if ! bench_wait_port "$port" 20; then
            echo "run.sh: workerd did not start; its log:" >&2
            cat "$dir/log" >&2
            exit 1
        fi
        ;;
    esac
}

failed=0
client_user=0
# wsbench_run SCENARIO SERVER ARGS...: one wsbench run against the server
# running now; its JSON line goes to $work/SCENARIO.SERVER.json.
wsbench_run() {
    local scenario=$1 server=$2 out status=0
    shift 2
    out=$("$wsbench" "$@" --port "$port" --warmup "$warmup" --duration "$duration" \
        --connect-timeout 30 2>"$work/$scenario.$server.err") || status=1
    report_run "$scenario" "$server" "$out" "$status"
}

report_run() {
    local scenario=$1 server=$2 out=$3 status=$4 json
    json=$(grep '^{' <<<"$out" || true)
    printf '%-10s %-8s %s\n' "$scenario" "$server" "$(grep '^wsbench [a-z]*: [0-9]' <<<"$out" || true)" >&2
    head -n 5 "$work/$scenario.$server.err" >&2
    if [ "$status" != 0 ] || [ -z "$json" ]; then
        echo "run.sh: $scenario against $server failed" >&2
        failed=1
        echo "${json:-{\}}" | sed 's/}$/,"run_failed":1}/; s/^{,/{/' >"$work/$scenario.$server.json"
    else
        echo "$json" >"$work/$scenario.$server.json"
    fi
    if [ -n "$json" ]; then
        client_user=$(awk -v a="$client_user" -v b="$(bench_field client_user_s "$json")" \
            'BEGIN { print a + b }')
    fi
}

# idle: opens $idle_conns connections in one room, holds them, reads the
# server's RSS before and once they are all open (and $idle_settle s more).
idle_run() {
    local server=$1 rss0 rss1 out status=0 held=0 json
    rss0=$(bench_rss_kb "$bench_server_pid")
    : >"$work/idle.$server.out"
    "$wsbench" idle --port "$port" --rooms 1 --conns "$idle_conns" \
        --duration $((idle_settle + 3)) --connect-timeout 60 \
        >"$work/idle.$server.out" 2>"$work/idle.$server.err" &
    client_pid=$!
    bench_wait_holding "$work/idle.$server.out" "$client_pid" 70
    sleep "$idle_settle"
    rss1=$(bench_rss_kb "$bench_server_pid")
    kill -0 "$client_pid" 2>/dev/null && held=1
    wait "$client_pid" || status=1
    client_pid=""
    out=$(cat "$work/idle.$server.out")
    if [ "$held" = 0 ]; then
        echo "run.sh: idle: the client ended before the memory was read" >&2
        status=1
    fi
    json=$(grep '^{' <<<"$out" || true)
    if [ -n "$json" ]; then
        json=${json%\}}",\"rss_before_kb\":$rss0,\"rss_held_kb\":$rss1,\"rss_bytes_per_conn\":$(
            awk -v a="$rss1" -v b="$rss0" -v n="$(bench_field opened "$json")" \
                'BEGIN { printf "%.0f", (n > 0 ? (a - b) * 1024 / n : 0) }')}"
        out=$(grep -v '^{' <<<"$out")$'\n'"$json"
        echo "run.sh: idle $server: RSS $rss0 -> $rss1 KiB" >&2
    fi
    report_run idle "$server" "$out" "$status"
}

scenarios=(echo1 echo8 echorooms broadcast idle connect counter)
start_ticks=$(bench_machine_ticks)
start_time=$(date +%s.%N)
for scenario in "${scenarios[@]}"; do
    for server in "${server_list[@]}"; do
        if [ "$scenario" = counter ] && [ "$server" = node ]; then
            continue
        fi
        start "$server"
        case $scenario in
        echo1) wsbench_run "$scenario" "$server" echo --rooms 1 --conns 100 --inflight 1 --size 32 ;;
        echo8) wsbench_run "$scenario" "$server" echo --rooms 1 --conns 100 --inflight 8 --size 32 ;;
        echorooms)
            wsbench_run "$scenario" "$server" echo --rooms 100 --conns 1000 --inflight 1 --size 32
            ;;
        broadcast)
            wsbench_run "$scenario" "$server" broadcast --rooms 1 --conns 1000 --inflight 16 \
                --size 32
            ;;
        idle) idle_run "$server" ;;
        connect) wsbench_run "$scenario" "$server" connect --conns 50 ;;
        counter) wsbench_run "$scenario" "$server" counter --rooms 10 --conns 100 --inflight 1 --size 16 ;;
        esac
        bench_stop_server
    done
done
end_ticks=$(bench_machine_ticks)
end_time=$(date +%s.%N)
others=$(awk -v busy=$((end_ticks - start_ticks)) -v server="$bench_server_ticks" \
    -v client="$client_user" -v hz="$(getconf CLK_TCK)" -v t0="$start_time" -v t1="$end_time" \
    'BEGIN { o = (busy - server) / hz - client; if (o < 0) o = 0; printf "%.0f", 100 * o / (t1 - t0) }')

# ---- the table ----

# value SCENARIO SERVER FIELD: the field of that run's JSON line, or "".
value() {
    local f="$work/$1.$2.json"
    if [ -f "$f" ] && grep -q "\"$3\":" "$f"; then
        bench_field "$3" "$(cat "$f")"
    fi
}

# The cell of a figure: rounded, with the run's trouble said.
cell() {
    local scenario=$1 server=$2 field=$3 v trouble=""
    if [ ! -f "$work/$scenario.$server.json" ]; then
        echo "—"
        return
    fi
    v=$(value "$scenario" "$server" "$field")
    for what in errors unanswered lost out_of_order failed dropped; do
        local n
        n=$(value "$scenario" "$server" "$what")
        if [ -n "$n" ] && [ "$n" != 0 ]; then
            case $what in
            failed | dropped) trouble+="${trouble:+, }$n conns $what" ;;
            *) trouble+="${trouble:+, }$n ${what//_/ }" ;;
            esac
        fi
    done
    if [ -n "$(value "$scenario" "$server" run_failed)" ]; then
        trouble+="${trouble:+; }run failed"
    fi
    if [ -z "$v" ]; then
        echo "failed${trouble:+ ($trouble)}"
    else
        printf '%s%s\n' "$(awk -v v="$v" 'BEGIN { printf "%.0f", v }')" "${trouble:+ ($trouble)}"
    fi
}

ratio() { # ratio SCENARIO FIELD BASELINE
    local a b
    a=$(value "$1" partyd "$2")
    b=$(value "$1" "$3" "$2")
    if [ -z "$a" ] || [ -z "$b" ] || [ ! -f "$work/$1.partyd.json" ] || [ ! -f "$work/$1.$3.json" ]; then
        echo "—"
        return
    fi
    awk -v a="$a" -v b="$b" 'BEGIN {
        if (b <= 0) print "—"; else if (a / b < 0.1) printf "%.3f×\n", a / b; else printf "%.2f×\n", a / b }'
}

ms() { # ms SCENARIO SERVER: "p50 / p99" in milliseconds
    local p50 p99
    p50=$(value "$1" "$2" p50_us)
    p99=$(value "$1" "$2" p99_us)
    if [ -z "$p50" ] || [ -z "$p99" ]; then
        echo "—"
        return
    fi
    awk -v a="$p50" -v b="$p99" 'BEGIN { printf "%.2f / %.2f", a / 1000, b / 1000 }'
}

label() {
    case $1 in
    echo1) echo "echo, 100 conns × 1 room, 1 in flight, 32 B" ;;
    echo8) echo "echo, 100 conns × 1 room, 8 in flight, 32 B" ;;
    echorooms) echo "echo, 100 rooms × 10 conns, 1 in flight, 32 B" ;;
    broadcast) echo "broadcast, 1 room × 1000 conns, window 16, 32 B" ;;
    idle) echo "idle, $idle_conns conns in 1 room" ;;
    connect) echo "connect, 50 at a time" ;;
    counter) echo "durable counter, 10 rooms × 10 conns, 1 in flight" ;;
    esac
}

metric() {
    case $1 in
    echo1 | echo8 | echorooms | counter) echo "msgs_per_s msgs/s" ;;
    broadcast) echo "deliveries_per_s deliveries/s" ;;
    idle) echo "rss_bytes_per_conn RSS B/conn (lower is better)" ;;
    connect) echo "handshakes_per_s handshakes/s" ;;
    esac
}

header="| scenario | metric |"
rule="|---|---|"
for server in "${server_list[@]}"; do
    case $server in
    partyd) header+=" partyd |" ;;
    workerd) header+=" PartyServer on workerd |" ;;
    node) header+=" node ws |" ;;
    esac
    rule+="---:|"
done
for server in "${server_list[@]}"; do
    if [ "$server" != partyd ] && [[ " ${server_list[*]} " == *" partyd "* ]]; then
        header+=" partyd ÷ $server |"
        rule+="---:|"
    fi
done
lat_header="| scenario (latency p50 / p99, ms) |"
lat_rule="|---|"
for server in "${server_list[@]}"; do
    lat_header+=" $server |"
    lat_rule+="---:|"
done
rows=""
lat_rows=""
for scenario in "${scenarios[@]}"; do
    read -r field name <<<"$(metric "$scenario")"
    rows+="| $(label "$scenario") | $name |"
    for server in "${server_list[@]}"; do
        rows+=" $(cell "$scenario" "$server" "$field") |"
    done
    for server in "${server_list[@]}"; do
        if [ "$server" != partyd ] && [[ " ${server_list[*]} " == *" partyd "* ]]; then
            rows+=" $(ratio "$scenario" "$field" "$server") |"
        fi
    done
    rows+=$'\n'
    if [ "$scenario" != idle ]; then
        lat_rows+="| $(label "$scenario") |"
        for server in "${server_list[@]}"; do
            lat_rows+=" $(ms "$scenario" "$server") |"
        done
        lat_rows+=$'\n'
    fi
done

versions="partyd $(bench_revision), Release build, $(nproc) event loops (its default --threads)"
if [[ " ${server_list[*]} " == *" workerd "* ]]; then
    versions+="; workerd $("$workerd_bin" --version 2>/dev/null | awk '{ print $2 }') with partyserver"
    versions+=" $(node -p 'require(process.argv[1]).version' "$baselines/node_modules/partyserver/package.json")"
fi
if [[ " ${server_list[*]} " == *" node "* ]]; then
    versions+="; node $(node --version) with ws"
    versions+=" $(node -p 'require(process.argv[1]).version' "$baselines/node_modules/ws/package.json")"
fi
table="$header
$rule
$rows
$lat_header
$lat_rule
$lat_rows"
machine="Machine: $(nproc) CPUs ($(bench_cpu_model)), $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo),
$(uname -sr); servers and wsbench share the CPUs. $versions; $(date -u +%Y-%m-%d).
Each run on a freshly started server: ${warmup} s warm-up, ${duration} s measured
(idle: RSS read ${idle_settle} s after the last connection opened).
Other processes used ${others}% of one CPU in user space during the run
(servers and wsbench excluded)."
if [ "$others" -gt 10 ]; then
    machine+=" **Preliminary: the machine was not quiet.**"
fi
machine+="
Command: \`$command_line\`"

printf '\n%s\n%s\n' "$table" "$machine"
if [ "$others" -gt 10 ]; then
    echo "run.sh: other processes used ${others}% of a CPU (user space) during the run: the" \
        "numbers may be disturbed; run again on a quiet machine" >&2
fi

if [ "$write_doc" = 1 ] && [ "$quick" = 0 ]; then
    bench_write_doc compare "partyd side by side with PartyServer on workerd and node ws" "$table
$machine"
elif [ "$write_doc" = 1 ]; then
    echo "run.sh: --quick: docs/benchmarks.md left alone" >&2
fi
if [ "$failed" != 0 ]; then
    echo "run.sh: some runs failed (see above)" >&2
    exit 1
fi
