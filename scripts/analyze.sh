#!/usr/bin/env bash
# The clang static analyzer (scan-build) over everything CMake compiles:
# src/, parties/, examples/, bench/ and tests/ (fuzz harnesses included).
# Prints the number of findings and one line per finding; exits 0 when
# there are none, 1 when there are, 2 when the build itself fails.
#   scripts/analyze.sh [SOURCE_DIR [BUILD_DIR]]
# Defaults: this checkout and its build/scan. The build directory is made
# afresh each run, since scan-build analyses only what it sees compiled.
# HTML reports stay in BUILD_DIR/reports (open them with scan-view).
set -euo pipefail

src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
build=${2:-$src/build/scan}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
reports=$build/reports

command -v scan-build >/dev/null || { echo "analyze: scan-build not found (apt-get install clang-tools)" >&2; exit 2; }
rm -rf "$build"
mkdir -p "$reports"
# clang compiles too: the fuzz harnesses need it, and the analyzer then
# sees the same flags the compiler does.
scan=(scan-build --use-cc=clang -o "$reports")

if ! "${scan[@]}" cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DPARTY_TESTS=ON \
    -DPARTY_FUZZ=ON >"$build/configure.log" 2>&1; then
  cat "$build/configure.log" >&2
  echo "analyze: configuring $build failed" >&2
  exit 2
fi
status=0
"${scan[@]}" --status-bugs cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1 || status=$?

# One report file per finding; the fields are in HTML comments at its top.
field() { sed -n "s/^<!-- $1 \(.*\) -->\$/\1/p" "$2" | head -n 1; }
mapfile -t found < <(find "$reports" -name 'report-*.html' | sort)
word=findings
[ ${#found[@]} -eq 1 ] && word=finding
echo "analyze: ${#found[@]} $word (clang static analyzer over $src)"
for f in "${found[@]}"; do
  file=$(field BUGFILE "$f")
  echo "  ${file#"$src"/}:$(field BUGLINE "$f"): $(field FUNCTIONNAME "$f"):" \
    "$(field BUGTYPE "$f"): $(field BUGDESC "$f")"
done
if [ ${#found[@]} -gt 0 ]; then
  echo "analyze: reports in $reports (scan-view $(dirname "${found[0]}"))"
  exit 1
fi
if [ "$status" -ne 0 ]; then
  tail -n 40 "$build/build.log" >&2
  echo "analyze: the build failed (log: $build/build.log)" >&2
  exit 2
fi
exit 0
