#!/usr/bin/env bash
# scripts/check-layers against small trees made here: a clean one passes;
# the same tree with one planted back edge, a cycle of five files, or an
# upward callback missing from the docs fails, naming what it found; a
# baseline holds known violations and fails when one of them is gone.
set -euo pipefail
check="$(cd "$(dirname "$0")/../.." && pwd)/scripts/check-layers"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

make_clean_tree() {
    local root=$1
    mkdir -p "$root/src" "$root/docs"
    cat > "$root/layers.txt" <<'L'
low: src/low
mid: src/mid src/ring*
high: src/high
L
    cat > "$root/src/low.h" <<'C'
typedef struct low { void (*ready_cb)(int); } low;
int low_run(void (*fn)(int), int x);
int low_do(void);
C
    cat > "$root/src/low.c" <<'C'
#include "low.h"
int low_do(void) { return 1; }
int low_run(void (*fn)(int), int x) { fn(x); return 0; }
C
    cat > "$root/src/mid.h" <<'C'
int mid_do(void);
C
    cat > "$root/src/mid.c" <<'C'
#include "low.h"
#include "mid.h"
static void visit(int x) { (void)x; }
int mid_do(void) { return low_do() + low_run(visit, 2); }
C
    cat > "$root/src/high.c" <<'C'
#include "mid.h"
int high_do(void) { return mid_do(); }
C
    cat > "$root/docs/architecture.md" <<'D'
# fixture
## Upward callbacks
| callback | installed by | called by | why |
|---|---|---|---|
| `visit` | mid | low_run | a visitor |
D
}

expect() { # expect STATUS PATTERN -- command...
    local want=$1 pattern=$2 out status
    shift 3
    set +e
    out=$("$@" 2>&1)
    status=$?
    set -e
    if [ "$status" -ne "$want" ] || ! grep -q -- "$pattern" <<<"$out"; then
        echo "FAIL: wanted status $want and '$pattern' from: $*" >&2
        echo "got status $status:" >&2
        echo "$out" >&2
        fails=$((fails + 1))
    else
        echo "ok: status $want, '$pattern'"
    fi
}

run() { "$check" --root "$1" --layers "$1/layers.txt" "${@:2}"; }

make_clean_tree "$tmp/clean"
expect 0 "0 violations" -- run "$tmp/clean"

# A planted back edge: the lowest layer calls the highest.
cp -r "$tmp/clean" "$tmp/backedge"
cat >> "$tmp/backedge/src/low.c" <<'C'
int high_do(void);
int low_calls_up(void) { return high_do(); }
C
expect 1 "back edge src/low (low) -> src/high (high): calls high_do" -- run "$tmp/backedge"
expect 1 "cycle spans layers" -- run "$tmp/backedge"

# Five files of one layer that call each other in a ring.
cp -r "$tmp/clean" "$tmp/ring"
for i in 0 1 2 3 4; do
    next=$(((i + 1) % 5))
    printf 'int ring%d(void);\nint ring%d(void) { return ring%d(); }\n' "$next" "$i" "$next" \
        > "$tmp/ring/src/ring$i.c"
done
expect 1 "cycle of 5 files (more than 4)" -- run "$tmp/ring"

# A callback stored in a lower module's function-pointer field, not listed
# in the docs: turning a call into a pointer does not hide it.
cp -r "$tmp/clean" "$tmp/hidden"
cat >> "$tmp/hidden/src/mid.c" <<'C'
static void on_ready(int x) { (void)x; }
void mid_install(low *l) { l->ready_cb = on_ready; }
C
expect 1 "callback on_ready of src/mid handed to src/low (field ready_cb) is not listed" -- run "$tmp/hidden"

# A field that shares its name with a function is not that function: a
# member handed to a lower module's function is data, not a callback.
cp -r "$tmp/clean" "$tmp/member"
cat >> "$tmp/member/src/mid.c" <<'C'
static int spares(int x) { return x; }
typedef struct pool { int spares; } pool;
int mid_pool(pool *p) { return low_run(0, p->spares) + low_run(0, (*p).spares) + spares(1); }
C
expect 0 "0 violations" -- run "$tmp/member"

# A baseline holds known violations, and fails once one is fixed.
run "$tmp/backedge" --write-baseline "$tmp/baseline.txt" >/dev/null
expect 0 "known" -- run "$tmp/backedge" --baseline "$tmp/baseline.txt"
expect 1 "fixed, remove it from the baseline" -- run "$tmp/clean" --baseline "$tmp/baseline.txt"

# A file no layer claims.
cp -r "$tmp/clean" "$tmp/unplaced"
echo 'int stray(void) { return 0; }' > "$tmp/unplaced/src/stray.c"
expect 1 "unplaced src/stray" -- run "$tmp/unplaced"

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all check-layers fixtures behaved"
