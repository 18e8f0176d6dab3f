#!/usr/bin/env bash
# scripts/check-format on a tree made here: a file as clang-format writes it
# passes; the same file with its braces moved fails, naming the file.
set -euo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cp "$top/.clang-format" "$tmp/"
printf 'int add(int a, int b) {\n    return a + b;\n}\n' > "$tmp/src/add.c"
"$top/scripts/check-format" "$tmp" | grep -q "1 files, 0 not formatted"
printf 'int add(int a,int b)\n{ return a+b; }\n' > "$tmp/src/add.c"
if out=$("$top/scripts/check-format" "$tmp"); then
    echo "FAIL: a badly formatted file passed: $out"
    exit 1
fi
grep -q "src/add.c is not formatted" <<<"$out"
echo "check-format passes a formatted file and fails an unformatted one"
