#!/usr/bin/env bash
# docs/development.md's layout list against the tree: every path it names
# exists, and every C source of the library and the parties (each .c, and
# each .h without a .c of its name) is named in it. Usage:
#   tests/checks/test_layout_doc.sh [ROOT]
set -euo pipefail
root=${1:-"$(cd "$(dirname "$0")/../.." && pwd)"}
doc="$root/docs/development.md"
cd "$root"
# The first fenced block after "## Layout": its lines that start with a path.
listed=$(awk '/^## Layout/{f=1} f&&/^```/{n++; if(n==2) exit; next} f&&n==1' "$doc" |
    grep -oE '^[A-Za-z0-9_./-]+' || true)
bad=0
for p in $listed; do
    if [ ! -e "$p" ]; then
        echo "test_layout_doc: docs/development.md lists $p, which does not exist"
        bad=$((bad + 1))
    fi
done
while read -r f; do
    base=${f%.*}
    if [ "${f##*.}" = h ] && [ -f "$base.c" ]; then
        continue
    fi
    if ! grep -qxF "$f" <<<"$listed"; then
        echo "test_layout_doc: $f is not in docs/development.md's layout list"
        bad=$((bad + 1))
    fi
done < <(find src parties -name '*.c' -o -name '*.h' | sort)
echo "test_layout_doc: $(wc -w <<<"$listed") paths listed, $bad problems"
[ "$bad" -eq 0 ]
