#!/bin/sh
# The checker's own test: scripts/check-exports on tests/exports/leak.c's
# object must exit 1 and name the leaked internal and a missing function.
#   check_fails.sh CHECK_EXPORTS LEAK_OBJECT HEADER
set -u
out=$("$1" "$2" "$3" 2>&1)
status=$?
printf '%s\n' "$out"
fail() {
    echo "check_fails: $1"
    exit 1
}
[ $status -eq 1 ] || fail "check-exports exited $status, expected 1"
printf '%s\n' "$out" | grep -q "exports party__exports_leak, which no public header declares" ||
    fail "the exported internal is not named"
printf '%s\n' "$out" | grep -q "does not export party_runtime_new, which a public header declares" ||
    fail "a public function missing from the object is not named"
printf '%s\n' "$out" | grep -q "party_strerror" && fail "party_strerror is exported and declared"
exit 0
