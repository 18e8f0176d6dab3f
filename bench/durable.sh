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

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/bench"
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
data_parent=${BENCH_DATA_PARENT:-$build}
doc="$root/docs/benchmarks.md"
command_line=""
for var in BENCH_DURATION BENCH_WARMUP BENCH_DATA_PARENT; do
    if [ -n "${!var:-}" ]; then
        command_line+="$var=${!var} "
    fi
done
command_line+="bench/durable.sh"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target partyd wsbench >/dev/null

mkdir -p "$data_parent"
data=$(mktemp -d "$data_parent/durable-data-XXXXXX")
partyd_pid=""
log="$data/partyd.log"

# Stops the partyd this script started, by its pid: SIGTERM, then SIGKILL
# after 15 s.
stop_partyd() {

    if [ -z "$partyd_pid" ]; then
        return 0
    fi
    partyd_ticks=$((partyd_ticks + $(awk '{ print $14 }' "/proc/$partyd_pid/stat" 2>/dev/null || echo 0)))
    kill -TERM "$partyd_pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$partyd_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$partyd_pid" 2>/dev/null; then
        echo "durable.sh: partyd $partyd_pid ignored SIGTERM; killing it" >&2
        kill -KILL "$partyd_pid" 2>/dev/null || true
    fi
    wait "$partyd_pid" 2>/dev/null || true
    partyd_pid=""
}

cleanup() {
    stop_partyd
    rm -rf "$data"
}
trap cleanup EXIT

# Starts partyd with --durability $1 on its own directory under $data and
# sets $port from its "listening on" line (waiting at most 10 s).
start_partyd() {

    mkdir -p "$data/$1"
    : >"$log"
    "$build/partyd" --port 0 --data "$data/$1" --durability "$1" 2>"$log" &
    partyd_pid=$!
    port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
        if [ -n "$port" ]; then
            return 0
        fi
        if ! kill -0 "$partyd_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "durable.sh: partyd did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

field() { # field NAME JSON
    sed -E "s/.*\"$1\":([0-9.]+).*/\1/" <<<"$2"
}

ms() { # microseconds -> milliseconds, 2 decimals
    awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'
}

# User-space CPU time of the whole machine (user + nice), in clock ticks:
# less what partyd and wsbench used, it tells whether another job (a build,
# a fuzzer) ran during the measurement. Kernel time is left out: the
# journal, writeback and loopback softirqs work for partyd too.
machine_ticks() {
    awk '/^cpu / { print $2 + $3; exit }' /proc/stat
}

rows=""
failed=0
partyd_ticks=0
client_cpu=0
start_ticks=$(machine_ticks)
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
    stop_partyd
done
end_ticks=$(machine_ticks)
end_time=$(date +%s.%N)
# Percent of one CPU used in user space by anything but partyd and wsbench.
others=$(awk -v busy=$((end_ticks - start_ticks)) -v server="$partyd_ticks" \
    -v client="$client_cpu" -v hz="$(getconf CLK_TCK)" -v t0="$start_time" -v t1="$end_time" \
    'BEGIN { o = (busy - server) / hz - client; if (o < 0) o = 0; printf "%.0f", 100 * o / (t1 - t0) }')
if [ "$others" -gt 10 ]; then
    echo "durable.sh: other processes used ${others}% of a CPU (user space) during the runs: the numbers" \
        "may be disturbed; run again on a quiet machine" >&2
fi

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
fstype=$(df --output=fstype "$data" | tail -n1 | tr -d ' ')
revision=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
# Untracked sources count too: say which files differ from the revision.
changes=$(git -C "$root" status --porcelain -- src include parties CMakeLists.txt 2>/dev/null |
    awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')
if [ -n "$changes" ]; then
    revision="$revision plus uncommitted $changes"
fi
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

begin="<!-- durable:begin (written by bench/durable.sh) -->"
end="<!-- durable:end -->"
if [ ! -f "$doc" ] || ! grep -qF "$begin" "$doc" || ! grep -qF "$end" "$doc"; then
    printf '# Benchmarks\n\n%s\n%s\n' "$begin" "$end" >>"$doc"
fi
block=$(mktemp)
printf '%s\n\n%s\n%s\n\n%s\n' "$begin" "$table" "$machine" "$end" >"$block"
awk -v begin="$begin" -v end="$end" -v block="$block" '
    $0 == begin { while ((getline line < block) > 0) print line; skip = 1; next }
    $0 == end { skip = 0; next }
    !skip { print }
' "$doc" >"$doc.tmp"
mv "$doc.tmp" "$doc"
rm -f "$block"
echo "durable.sh: wrote the table into docs/benchmarks.md" >&2
