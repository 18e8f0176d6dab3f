#!/usr/bin/env bash
# test_layout_doc.sh on a tree made here: it passes when the list and the
# tree agree, and fails naming the file when a source is missing from the
# list or the list names a file that is gone.
set -euo pipefail
check="$(cd "$(dirname "$0")" && pwd)/test_layout_doc.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/docs" "$tmp/src/codecs" "$tmp/parties"
touch "$tmp/src/codecs/a.c" "$tmp/src/codecs/a.h"
printf '# x\n\n## Layout\n\n```text no-test: a list\nsrc/codecs/a.c   a\n```\n' > "$tmp/docs/development.md"
"$check" "$tmp" | grep -q "1 paths listed, 0 problems"
touch "$tmp/src/codecs/b.c"
if out=$("$check" "$tmp"); then
    echo "FAIL: an unlisted source passed: $out"
    exit 1
fi
grep -q "src/codecs/b.c is not in" <<<"$out"
rm "$tmp/src/codecs/b.c" "$tmp/src/codecs/a.c"
if out=$("$check" "$tmp"); then
    echo "FAIL: a listed file that is gone passed: $out"
    exit 1
fi
grep -q "lists src/codecs/a.c, which does not exist" <<<"$out"
echo "test_layout_doc fails on an unlisted source and on a listed file that is gone"
