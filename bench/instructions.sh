#!/usr/bin/env bash
# instructions.sh: what a change costs per message, counted rather than
# timed. Runs partyd (Release) under callgrind for each scenario, for this
# tree and for a base revision, and prints the user-space instructions and
# the allocations (malloc, calloc, realloc calls) per message. On a shared
# machine throughput moves by 10% from run to run; instruction counts move
# by well under 1%, so they show a hot-path change that timing cannot.
# Kernel time (the socket calls, most of a message's cost) is not counted.
#
#   bench/instructions.sh [BASE]    BASE: a git revision (default HEAD~1)
#
# What a message costs in steady state: each scenario runs twice, for
# BENCH_DURATION seconds (default 5) and for three times that, of wsbench against
# one partyd --threads 1 under callgrind, and the table divides the
# difference of the counts by the difference of the messages. Start-up,
# shutdown and the connections' handshakes are in both runs and cancel,
# so the figure does not move with how many messages a loaded machine
# managed to send (with a plain quotient it did: a fixed start-up cost
# spread over fewer messages). Writes the
# table, with the command, into docs/benchmarks.md between the
# "instructions" markers unless BENCH_NO_DOC=1.
set -euo pipefail

bench_name=instructions.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

base=${1:-HEAD~1}
duration=${BENCH_DURATION:-5}
if ! command -v valgrind >/dev/null; then
    echo "$bench_name: needs valgrind (scripts/deps.sh --test installs it)" >&2
    exit 1
fi
base_rev=$(git -C "$bench_root" rev-parse --short "$base")

bench_build_release partyd wsbench
wsbench="$bench_build/bench/wsbench"
work=$(mktemp -d "$bench_build/instructions-XXXXXX")
trap 'bench_stop_server; rm -rf "$work"' EXIT

# The base revision's partyd, built from an export of its tree.
mkdir -p "$work/base"
git -C "$bench_root" archive "$base_rev" | tar -x -C "$work/base"
cmake -S "$work/base" -B "$work/base/build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF >/dev/null
cmake --build "$work/base/build" -j "$(nproc)" --target partyd >/dev/null

# name | metric field | wsbench arguments
scenarios=(
    "echo, 100 conns × 1 room, 1 in flight, 32 B|msgs|echo --rooms 1 --conns 100 --inflight 1 --size 32"
    "echo, 100 conns × 1 room, 8 in flight, 32 B|msgs|echo --rooms 1 --conns 100 --inflight 8 --size 32"
    "broadcast, 1 room × 100 conns, window 16, 32 B (per delivery)|deliveries|broadcast --rooms 1 --conns 100 --inflight 16 --size 32"
    "connect, 50 at a time, 1 room (per handshake: open, upgrade, close)|handshakes|connect --rooms 1 --conns 50"
)


# One run: prints "instructions allocations messages".
run_once() {
    local binary=$1 field=$2 args=$3 duration=$4 json
    rm -rf "$work/data" "$work/callgrind.out"
    mkdir -p "$work/data"
    bench_start_server "$work/log" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$binary" --port 0 --threads 1 --data "$work/data"
    # shellcheck disable=SC2086
    json=$("$wsbench" $args --port "$port" --warmup 0 --duration "$duration" \
        --connect-timeout 60 2>"$work/wsbench.err" | grep '^{') || json=""
    bench_stop_server
    # This runs in a subshell: report and fail with the reason; the caller
    # sees an empty line.
    if [ -z "$json" ]; then
        echo "$bench_name: wsbench $args failed:" >&2
        cat "$work/wsbench.err" >&2
        return 1
    fi
    if [ ! -s "$work/callgrind.out" ]; then
        echo "$bench_name: partyd under callgrind wrote no profile (killed?); its log:" >&2
        cat "$work/log" >&2
        return 1
    fi
    echo "$(callgrind_counts "$work/callgrind.out") $(bench_field "$field" "$json")"
}

# A scenario's steady-state counts: prints "instructions allocations
# messages", each the 3 × duration run's less the duration run's. A
# machine loaded by other work can make the long run send fewer messages
# than the short one: then both run again, once.
run_steady() {
    local short long try si sa sn li la ln
    for try in 1 2; do
        short=$(run_once "$1" "$2" "$3" "$duration") || return 1
        long=$(run_once "$1" "$2" "$3" $((duration * 3))) || return 1
        read -r si sa sn <<<"$short"
        read -r li la ln <<<"$long"
        if [ "$(awk -v s="$sn" -v l="$ln" 'BEGIN { print (l > 1.5 * s) }')" = 1 ]; then
            break
        fi
        echo "$bench_name: the long run sent $ln messages, the short one $sn (a loaded machine?)" >&2
        if [ "$try" = 2 ]; then
            return 1
        fi
    done
    awk -v si="$si" -v sa="$sa" -v sn="$sn" -v li="$li" -v la="$la" -v ln="$ln" \
        'BEGIN { printf "%.0f %.0f %.0f\n", li - si, la - sa, ln - sn }'
}

table="| scenario | instructions / message, $base_rev | this tree | change | allocations / message, $base_rev | this tree |
|---|---:|---:|---:|---:|---:|"
for entry in "${scenarios[@]}"; do
    IFS='|' read -r name field args <<<"$entry"
    base_n="" n=""
    read -r base_ir base_allocs base_n < <(run_steady "$work/base/build/partyd" "$field" "$args") || true
    read -r ir allocs n < <(run_steady "$bench_build/partyd" "$field" "$args") || true
    if [ -z "${base_n:-}" ] || [ -z "${n:-}" ]; then
        echo "$bench_name: $name: a run failed (above)" >&2
        exit 1
    fi
    row=$(awk -v name="$name" -v bi="$base_ir" -v ba="$base_allocs" -v bn="$base_n" \
        -v i="$ir" -v a="$allocs" -v n="$n" 'BEGIN {
            printf "| %s | %.0f | %.0f | %+.1f%% | %.3f | %.3f |", name, bi / bn, i / n,
                (i / n - bi / bn) * 100 / (bi / bn), ba / bn, a / n }')
    echo "$row" >&2
    table+=$'\n'"$row"
done

text="Measured by \`bench/instructions.sh $base\` (this tree: $(bench_revision)), $(date -u +%Y-%m-%d),
on $(bench_cpu_model), partyd --threads 1 under callgrind, runs of ${duration} s and $((duration * 3)) s.
User-space instructions and allocator calls of partyd per message in steady
state (the difference of the two runs: start-up and handshakes cancel); the
kernel's share of a message (most of it) is not counted.

$table"
echo "$text"
if [ "${BENCH_NO_DOC:-0}" != 1 ]; then
    bench_write_doc instructions "Instructions per message" "$text"
fi
