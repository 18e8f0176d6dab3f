#!/usr/bin/env bash
# scripts/analyze.sh fails on a finding: a tiny project whose one file uses
# memory after freeing it gets 1 finding named by file, line and kind, and
# exit status 1; the same project with the bug removed gets 0 and status 0.
#   tests/test_analyze.sh PATH/TO/scripts/analyze.sh
set -euo pipefail
analyze=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/src"
cat >"$dir/src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(planted LANGUAGES C)
add_executable(planted planted.c)
EOF
cat >"$dir/src/planted.c" <<'EOF'
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *p = malloc(8);
    if (p == NULL)
        return 1;
    strcpy(p, "planted");
    free(p);
    return p[0] == 'p';
}
EOF

expect() { # expected status, then patterns the output must hold
  local want=$1 status=0 out pattern
  shift
  out=$(JOBS=1 "$analyze" "$dir/src" "$dir/build" 2>&1) || status=$?
  if [ "$status" -ne "$want" ]; then
    printf '%s\nexpected exit status %s, got %s\n' "$out" "$want" "$status" >&2
    exit 1
  fi
  for pattern in "$@"; do
    if ! grep -q -- "$pattern" <<<"$out"; then
      printf '%s\nexpected a line matching: %s\n' "$out" "$pattern" >&2
      exit 1
    fi
  done
}

expect 1 '^analyze: 1 finding ' 'planted\.c:9: main: Use-after-free'
sed -i 's/return p\[0\] == .p.;/return 0;/' "$dir/src/planted.c"
expect 0 '^analyze: 0 findings'
echo "analyze: a planted use after free fails the check; without it the check passes"
