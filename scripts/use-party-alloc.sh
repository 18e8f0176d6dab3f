#!/bin/sh
# Routes the allocations of partyd's C sources through the allocation
# family of src/codecs/alloc.h: malloc, calloc, realloc, strdup, strndup and
# free calls become party__malloc ... party__free, and each file that then
# uses them includes "alloc.h" (after its last #include). Idempotent: run it
# again after adding code, then review the diff. Files named on the command
# line, or every .c file under src/ (all layers and src/bin) except
# src/codecs/alloc.c itself. parties/ are left alone: a party is written
# against party.h only, and allocates with the C library's malloc. Only the
# lines it changed are re-formatted (git clang-format), so the rest of each
# file stays as it was.
set -eu
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
    set -- $(find src -name '*.c' ! -path src/codecs/alloc.c | sort)
fi

for f in "$@"; do
    # A call is the name followed by "(", not a member (->free(, .free())
    # and not already prefixed (party__free( has no word boundary).
    perl -0pi -e 's/(?<![\w.>])(malloc|calloc|realloc|strdup|strndup|free)(\s*\()/party__$1$2/g' "$f"
    if grep -q 'party__\(malloc\|calloc\|realloc\|strdup\|strndup\|free\)\s*(' "$f" &&
        ! grep -q '^#include "alloc.h"' "$f"; then
        last=$(grep -n '^#include' "$f" | tail -1 | cut -d: -f1)
        if grep -q '^#include <' "$f" && [ "$(sed -n "${last}p" "$f" | cut -c10)" = '<' ]; then
            sed -i "${last}a\\
\\
#include \"alloc.h\"" "$f"
        else
            sed -i "${last}a\\
#include \"alloc.h\"" "$f"
        fi
    fi
done
git clang-format -q --force -- "$@"
