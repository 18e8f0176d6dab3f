#!/usr/bin/env bash
# gated.sh: what the output gate costs a broadcast, counted rather than
# timed. Runs partyd (Release) under callgrind, for this tree and for a
# base revision, while wsbench's broadcast mode drives the stored-chat
# party (bench/stored_chat.c: each message is written to the room's
# storage, then broadcast to the room's other connections, so every
# delivery is held by the output gate until the commit). Prints, per
# delivery:
#   - the allocator calls (malloc, calloc, realloc) and instructions of
#     the output path alone: callgrind collects only inside
#     party_room_broadcast (where output is held), the release after the
#     commit (party__room_release_held; party__conn_gate_release, which
#     it calls, where the compiler inlined it into its caller) and
#     party__conn_flush_dirty (where output is written);
#   - the allocator calls and instructions of the whole process
#     (start-up, handshakes, events and commits included).
#
#   bench/gated.sh [BASE]    BASE: a git revision (default HEAD~1)
#
# Each run is BENCH_DURATION seconds (default 5) of wsbench against one
# partyd --threads 1. The party object is built from this tree and loaded
# into both partyds. Writes the table, with the command, into
# docs/benchmarks.md between the "gated" markers unless BENCH_NO_DOC=1.
set -euo pipefail

bench_name=gated.sh
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

base=${1:-HEAD~1}
duration=${BENCH_DURATION:-5}
conns=${BENCH_CONNS:-100}
if ! command -v valgrind >/dev/null; then
    echo "$bench_name: needs valgrind (scripts/deps.sh --test installs it)" >&2
    exit 1
fi
base_rev=$(git -C "$bench_root" rev-parse --short "$base")

bench_build_release partyd wsbench stored_chat
wsbench="$bench_build/bench/wsbench"
party_so="$bench_build/bench/stored_chat.so"
work=$(mktemp -d "$bench_build/gated-XXXXXX")
trap 'bench_stop_server; rm -rf "$work"' EXIT

mkdir -p "$work/base"
git -C "$bench_root" archive "$base_rev" | tar -x -C "$work/base"
cmake -S "$work/base" -B "$work/base/build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF >/dev/null
cmake --build "$work/base/build" -j "$(nproc)" --target partyd >/dev/null

# A function named here must not run inside another one named here:
# callgrind toggles collection on entering each. A Release build inlines
# this tree's party__room_release_held into room_commit_done, so the
# release is found by party__conn_gate_release (absent from older trees,
# where the release is party__room_release_held, called).
output_path=(--toggle-collect=party_room_broadcast --toggle-collect=party__room_release_held
    --toggle-collect=party__conn_gate_release --toggle-collect=party__conn_flush_dirty)


# run_once BINARY CALLGRIND-OPTION...: "instructions allocations deliveries".
run_once() {
    local binary=$1 json
    shift
    rm -rf "$work/data" "$work/callgrind.out"
    mkdir -p "$work/data"
    bench_start_server "$work/log" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$@" "$binary" --port 0 --threads 1 --data "$work/data" --party "stored-chat=$party_so"
    json=$("$wsbench" broadcast --party stored-chat --rooms 1 --conns "$conns" --inflight 16 \
        --size 32 --port "$port" --warmup 0 --duration "$duration" --connect-timeout 60 \
        2>"$work/wsbench.err" | grep '^{') || json=""
    bench_stop_server
    if [ -z "$json" ]; then
        echo "$bench_name: wsbench failed:" >&2
        cat "$work/wsbench.err" >&2
        return 1
    fi
    if [ ! -s "$work/callgrind.out" ]; then
        echo "$bench_name: partyd under callgrind wrote no profile (killed?); its log:" >&2
        cat "$work/log" >&2
        return 1
    fi
    echo "$(callgrind_counts "$work/callgrind.out") $(bench_field deliveries "$json")"
}

declare -A ir allocs n
for which in base tree; do
    binary="$bench_build/partyd"
    [ "$which" = base ] && binary="$work/base/build/partyd"
    read -r ir[$which.path] allocs[$which.path] n[$which.path] < <(run_once "$binary" "${output_path[@]}") || true
    read -r ir[$which.all] allocs[$which.all] n[$which.all] < <(run_once "$binary") || true
    for part in path all; do
        if [ -z "${n[$which.$part]:-}" ]; then
            echo "$bench_name: a run failed (above)" >&2
            exit 1
        fi
    done
done

per() { awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN { printf f, a / b }'; }
table="| per delivery, broadcast to $((conns - 1)) connections after a write | $base_rev | this tree |
|---|---:|---:|
| allocations, output path (hold, release, write) | $(per "${allocs[base.path]}" "${n[base.path]}" %.3f) | $(per "${allocs[tree.path]}" "${n[tree.path]}" %.3f) |
| instructions, output path | $(per "${ir[base.path]}" "${n[base.path]}" %.0f) | $(per "${ir[tree.path]}" "${n[tree.path]}" %.0f) |
| allocations, whole partyd (events, commits, start-up, handshakes) | $(per "${allocs[base.all]}" "${n[base.all]}" %.3f) | $(per "${allocs[tree.all]}" "${n[tree.all]}" %.3f) |
| instructions, whole partyd | $(per "${ir[base.all]}" "${n[base.all]}" %.0f) | $(per "${ir[tree.all]}" "${n[tree.all]}" %.0f) |"

text="$table

partyd --threads 1 under callgrind for ${duration} s per run, driven by
\`wsbench broadcast --party stored-chat --conns $conns --inflight 16 --size 32\`;
this tree: $(bench_revision); $(date -u +%Y-%m-%d), on $(bench_cpu_model).
Command: \`$(bench_command gated.sh BENCH_DURATION BENCH_CONNS) $base\`"
echo "$text"
if [ "${BENCH_NO_DOC:-0}" != 1 ]; then
    bench_write_doc gated "Gated broadcast" "$text"
fi
