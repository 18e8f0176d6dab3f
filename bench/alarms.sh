#!/usr/bin/env bash
# alarms.sh: what rooms waiting on alarms cost, and how late the alarms fire.
# Builds bench/alarms (Release, build/bench) and runs it twice on fresh data
# directories: a quick run (10000 rooms) whose setup rate sizes the setup
# budget of the main run (100000 rooms), each room with an alarm 1..10 s
# past that budget, all rooms evicted while they wait. The setup uses
# durability normal (said in the output). Prints both results, a table for
# docs/benchmarks.md, the machine, and the exact commands. Leaves
# docs/benchmarks.md alone.
#
# Environment: BENCH_ROOMS (default 100000), BENCH_QUICK_ROOMS (default
# 10000; 0 skips the quick run and lets alarms size the budget from its
# warm-up), BENCH_DATA_PARENT (where the data directories are made; default
# build/bench, i.e. the repository's filesystem).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/bench"
rooms=${BENCH_ROOMS:-100000}
quick=${BENCH_QUICK_ROOMS:-10000}
data_parent=${BENCH_DATA_PARENT:-$build}
idle_timeout=1
# The main run's budget: this many times the setup time the quick run's
# rate predicts, plus the eviction wait (2 x idle_timeout + 1 s) and 5 s.
budget_factor=1.5
command_line=""
for var in BENCH_ROOMS BENCH_QUICK_ROOMS BENCH_DATA_PARENT; do
    if [ -n "${!var:-}" ]; then
        command_line+="$var=${!var} "
    fi
done
command_line+="bench/alarms.sh"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target alarms >/dev/null
mkdir -p "$data_parent"

field() { # field NAME JSON
    sed -E "s/.*\"$1\":\"?([^,\"}]*)\"?[,}].*/\1/" <<<"$2"
}

# User-space CPU time of the whole machine (user + nice), in clock ticks:
# less what alarms used, it tells whether another job ran meanwhile.
machine_ticks() {
    awk '/^cpu / { print $2 + $3; exit }' /proc/stat
}

failed=0
bench_user=0
commands=()
# run_alarms ARGS...: runs alarms, echoes its progress to stderr, sets $json.
run_alarms() {
    local out cmd
    cmd="build/bench/bench/alarms $*"
    commands+=("$cmd")
    echo "alarms.sh: $cmd" >&2
    out=$("$build/bench/alarms" "$@") || failed=1
    echo "$out" | head -n1 >&2
    json=$(grep '^{' <<<"$out" || true)
    if [ -z "$json" ]; then
        echo "alarms.sh: alarms printed no result" >&2
        exit 1
    fi
    bench_user=$(awk -v a="$bench_user" -v b="$(field user_s "$json")" 'BEGIN { print a + b }')
}

start_ticks=$(machine_ticks)
start_time=$(date +%s.%N)
budget_args=()
quick_json=""
if [ "$quick" -gt 0 ]; then
    run_alarms --rooms "$quick" --durability normal --idle-timeout "$idle_timeout" \
        --data-parent "$data_parent"
    quick_json=$json
    rate=$(awk -v n="$(field created "$json")" -v s="$(field setup_s "$json")" \
        'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')
    budget=$(awk -v f="$budget_factor" -v n="$rooms" -v r="$rate" -v i="$idle_timeout" \
        'BEGIN { b = f * n / r + 2 * i + 1 + 5; printf "%d", b == int(b) ? b : int(b) + 1 }')
    if ! awk -v r="$rate" 'BEGIN { exit !(r > 0) }'; then
        echo "alarms.sh: the quick run made no rooms" >&2
        exit 1
    fi
    echo "alarms.sh: the quick run made rooms at $rate/s: setup budget $budget s for $rooms rooms" >&2
    budget_args=(--setup-budget "$budget")
fi
run_alarms --rooms "$rooms" --durability normal --idle-timeout "$idle_timeout" \
    --data-parent "$data_parent" "${budget_args[@]}"
main_json=$json
end_ticks=$(machine_ticks)
end_time=$(date +%s.%N)
others=$(awk -v busy=$((end_ticks - start_ticks)) -v bench="$bench_user" \
    -v hz="$(getconf CLK_TCK)" -v t0="$start_time" -v t1="$end_time" \
    'BEGIN { o = busy / hz - bench; if (o < 0) o = 0; printf "%.0f", 100 * o / (t1 - t0) }')
if [ "$others" -gt 10 ]; then
    echo "alarms.sh: other processes used ${others}% of a CPU (user space) during the runs: the" \
        "numbers may be disturbed; run again on a quiet machine" >&2
fi

row() { # row JSON
    local j=$1
    printf '| %s | %s | %.1f | %s | %s | %.0f | %.0f | %s / %s | %s | %s | %s | %s | %s |\n' \
        "$(field rooms "$j")" "$(field durability "$j")" "$(field setup_s "$j")" \
        "$(field rss_before_kb "$j")" "$(field rss_waiting_kb "$j")" \
        "$(field bytes_per_alarm "$j")" "$(field heap_bytes_per_alarm "$j")" \
        "$(field fired "$j")" "$(field rooms "$j")" "$(field fire_span_s "$j")" \
        "$(field p50_ms "$j")" "$(field p99_ms "$j")" "$(field p999_ms "$j")" \
        "$(field max_ms "$j")"
}

rows=""
if [ -n "$quick_json" ]; then
    rows+=$(row "$quick_json")$'\n'
fi
rows+=$(row "$main_json")
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
fstype=$(df --output=fstype "$data_parent" | tail -n1 | tr -d ' ')
revision=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
changes=$({ git -C "$root" status --porcelain -- src include CMakeLists.txt 2>/dev/null || true; } |
    awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')
if [ -n "$changes" ]; then
    revision="$revision plus uncommitted $changes"
fi
printf '\n%s\n%s\n%s\n\n' \
    "| rooms | setup durability | setup s | RSS before kB | RSS waiting kB | B/alarm (RSS) | B/alarm (heap) | fired | fire span s | late p50 ms | p99 ms | p99.9 ms | max ms |" \
    "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|" \
    "$rows"
printf '%s\n' "Machine: $(nproc) CPUs ($cpu), $(uname -sr); data directory on $fstype."
printf '%s\n' "partyd $revision, Release build; $(date -u +%Y-%m-%d). Other processes used"
printf '%s\n' "${others}% of one CPU in user space during the runs (alarms excluded)."
printf '%s\n' "Rooms created with durability $(field durability "$main_json"); idle_timeout ${idle_timeout} s;"
printf '%s\n' "runs valid (all created, all evicted before the first due time, every alarm fired"
quick_valid="not run"
if [ -n "$quick_json" ]; then
    quick_valid=$(field valid "$quick_json")
fi
printf '%s\n' "once, none early): quick $quick_valid, main $(field valid "$main_json")."
printf '%s\n' "Command: \`$command_line\`, which ran:"
for c in "${commands[@]}"; do
    printf '    %s\n' "$c"
done
printf '\nquick: %s\nmain:  %s\n' "$quick_json" "$main_json"

if [ "$failed" != 0 ]; then
    echo "alarms.sh: a run was not valid (see its messages above)" >&2
    exit 1
fi
