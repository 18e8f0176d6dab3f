# shellcheck shell=bash
# bench/lib.sh: what the benchmark scripts share, sourced by them (bash):
# the Release build, starting and stopping one server process by its pid,
# reading a process's memory, fields of wsbench's JSON line, the revision
# measured, and rewriting a section of docs/benchmarks.md between markers.
# Scripts set bench_name (for messages) before sourcing.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_build="$bench_root/build/bench"
bench_doc="$bench_root/docs/benchmarks.md"
bench_name=${bench_name:-bench}
bench_server_pid=""
bench_server_ticks=0 # user-space CPU ticks of the servers stopped so far
port=""

# Builds the given targets (default partyd and wsbench), Release, into
# build/bench.
bench_build_release() {
    local targets=("$@")
    if [ ${#targets[@]} = 0 ]; then
        targets=(partyd wsbench)
    fi
    cmake -S "$bench_root" -B "$bench_build" -DCMAKE_BUILD_TYPE=Release -DPARTY_TESTS=OFF >/dev/null
    cmake --build "$bench_build" -j "$(nproc)" --target "${targets[@]}" >/dev/null
}

# bench_start_server LOG CMD...: starts CMD in the background, its stderr
# in LOG, and sets $port from its "listening on http://127.0.0.1:PORT"
# line (partyd's, and the node baseline's), waiting at most 10 s.
bench_start_server() {
    local log=$1
    shift
    : >"$log"
    "$@" >/dev/null 2>"$log" &
    bench_server_pid=$!
    port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
        if [ -n "$port" ]; then
            return 0
        fi
        if ! kill -0 "$bench_server_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "$bench_name: $(basename "$1") did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

# bench_start_partyd LOG ARGS...: the Release partyd on a free port.
bench_start_partyd() {
    local log=$1
    shift
    bench_start_server "$log" "$bench_build/partyd" --port 0 "$@"
}

# bench_wait_port PORT SECONDS: waits until something accepts on
# 127.0.0.1:PORT (for servers that print no "listening on" line).
bench_wait_port() {
    for _ in $(seq $(($2 * 10))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        if [ -n "$bench_server_pid" ] && ! kill -0 "$bench_server_pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# A free TCP port on 127.0.0.1 (the kernel's pick, released at once).
bench_free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
        console.log(s.address().port); s.close(); })'
}

# Stops the server this script started, by its pid: SIGTERM, then SIGKILL
# after 15 s. Adds its user-space CPU time to bench_server_ticks.
bench_stop_server() {
    local pid=$bench_server_pid
    if [ -z "$pid" ]; then
        return 0
    fi
    bench_server_ticks=$((bench_server_ticks + $(awk '{ print $14 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$bench_name: server $pid ignored SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    bench_server_pid=""
}

# Resident memory (VmRSS) and anonymous memory (heap, stacks, mmaps) of a
# process, in KiB.
bench_rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}
bench_anon_kb() {
    awk '/^Anonymous:/ { print $2 }' "/proc/$1/smaps_rollup"
}

# bench_rooms_pass WSBENCH PORT PARTY PREFIX N SOURCE: one WebSocket to
# each of the N rooms PREFIX-0 .. PREFIX-(N-1) of PARTY, one after another
# (wsbench idle --grouped), from the local address SOURCE (a pass of its
# own shares no TIME_WAIT port with another). wsbench's output and status.
bench_rooms_pass() {
    "$1" idle --port "$2" --party "$3" --room-prefix "$4" --rooms "$5" \
        --grouped --conns "$5" --duration 0.2 --connect-timeout 120 --source "$6"
}

# bench_settle PORT: waits until partyd on PORT has no connection open but
# the metrics scrape asking, so that no pass pays for the closes of the
# one before; after 30 s the script stops.
bench_settle() {
    local open
    for _ in $(seq 600); do
        open=$(curl -s "http://127.0.0.1:$1/_partyd/metrics" |
            sed -n 's/^partyd_connections_open \([0-9]*\).*/\1/p')
        [ "$open" = 1 ] && return 0
        sleep 0.05
    done
    echo "$bench_name: connections still open after 30 s" >&2
    exit 1
}

# bench_wait_holding OUT PID SECONDS: waits until the background `wsbench
# idle` of pid PID says in its output file OUT that it holds its
# connections, or has exited, or SECONDS have passed (the caller checks
# OUT for what it needs).
bench_wait_holding() {
    for _ in $(seq $(($3 * 10))); do
        if grep -q '^wsbench idle: holding' "$1" || ! kill -0 "$2" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
}

# bench_field NAME JSON: a number from wsbench's JSON line.
bench_field() {
    sed -E "s/.*\"$1\":([0-9.]+).*/\1/" <<<"$2"
}

# bench_command SCRIPT VAR...: the command that reproduces this run, for
# the docs: each VAR that is set (its value quoted when it holds a space),
# then bench/SCRIPT.
bench_command() {
    local script=$1 var out=""
    shift
    for var in "$@"; do
        if [ -n "${!var:-}" ]; then
            case ${!var} in
            *' '*) out+="$var=\"${!var}\" " ;;
            *) out+="$var=${!var} " ;;
            esac
        fi
    done
    printf '%s' "${out}bench/$script"
}

# The median of the numbers on standard input, one a line (the mean of
# the middle two for an even count).
bench_median() {
    sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# User-space CPU time of the whole machine (user + nice), in clock ticks.
bench_machine_ticks() {
    awk '/^cpu / { print $2 + $3; exit }' /proc/stat
}

bench_cpu_model() {
    sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1
}

# The revision measured, and which source files differ from it.
bench_revision() {
    local revision changes
    revision=$(git -C "$bench_root" describe --always 2>/dev/null || echo unknown)
    changes=$(git -C "$bench_root" status --porcelain -- src include parties CMakeLists.txt 2>/dev/null |
        awk '{ print $2 }' | tr '\n' ' ' | sed 's/ $//')
    if [ -n "$changes" ]; then
        revision="$revision plus uncommitted $changes"
    fi
    echo "$revision"
}

# bench_write_doc NAME HEADING TEXT: puts TEXT between the NAME markers of
# docs/benchmarks.md, adding "## HEADING" and the markers at the end if
# they are not there yet.
bench_write_doc() {
    local name=$1 heading=$2 text=$3 block
    local begin="<!-- $name:begin (written by bench/$bench_name) -->"
    local end="<!-- $name:end -->"
    if [ ! -f "$bench_doc" ] || ! grep -qF "$begin" "$bench_doc" || ! grep -qF "$end" "$bench_doc"; then
        printf '\n## %s\n\n%s\n%s\n' "$heading" "$begin" "$end" >>"$bench_doc"
    fi
    block=$(mktemp)
    printf '%s\n\n%s\n\n%s\n' "$begin" "$text" "$end" >"$block"
    awk -v begin="$begin" -v end="$end" -v block="$block" '
        $0 == begin { while ((getline line < block) > 0) print line; skip = 1; next }
        $0 == end { skip = 0; next }
        !skip { print }
    ' "$bench_doc" >"$bench_doc.tmp"
    mv "$bench_doc.tmp" "$bench_doc"
    rm -f "$block"
    echo "$bench_name: wrote the table into docs/benchmarks.md" >&2
}

# Instructions of the whole program, and calls into the allocator from
# outside it, of a callgrind output file: "instructions allocations"
# (instructions.sh, gated.sh).
callgrind_counts() {
    awk -v alloc='^(malloc|calloc|realloc)(\047[0-9]+)?$' '
        /^summary:/ { ir = $2 }
        /^totals:/ { ir = $2 }
        # Names are compressed: "(id) name" the first time, "(id)" after,
        # and the first time may be on a fn= line as well as a cfn= line.
        /^c?fn=/ {
            line = substr($0, index($0, "=") + 1)
            name = line
            if (match(line, /^\([0-9]+\)/)) {
                id = substr(line, RSTART, RLENGTH)
                if (length(line) > RLENGTH)
                    names[id] = substr(line, RLENGTH + 2)
                name = names[id]
            }
            if ($0 ~ /^cfn=/)
                callee = name
            else
                caller = name
            next
        }
        # realloc(NULL, n) calls malloc itself: count calls into the
        # allocator from outside it only.
        /^calls=/ {
            split(substr($0, 7), f, " ")
            if (callee ~ alloc && caller !~ alloc)
                allocs += f[1]
        }
        END { print ir + 0, allocs + 0 }
    ' "$1"
}
