#!/bin/sh
# The systemd unit docs/operations.md shows: Type=notify with
# NotifyAccess=all and an ExecReload that sends SIGUSR2 (an upgrade), and
# accepted by `systemd-analyze verify` with ExecStart pointing at the
# partyd just built. Exits 77 (ctest: skipped) where systemd-analyze is
# not installed. Usage: test_systemd_unit.sh DOCS_OPERATIONS_MD PARTYD
set -eu
doc=$1
partyd=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# The ini block under "## A systemd unit".
awk '/^## A systemd unit/ { in_section = 1 }
     in_section && /^```ini/ { in_block = 1; next }
     in_block && /^```/ { exit }
     in_block { print }' "$doc" | sed "s|/usr/local/bin/partyd|$partyd|" > "$dir/partyd.service"
for line in 'Type=notify' 'NotifyAccess=all' 'ExecReload=/bin/kill -USR2 $MAINPID'; do
    if ! grep -qxF "$line" "$dir/partyd.service"; then
        echo "test_systemd_unit: the unit in $doc has no line '$line'" >&2
        cat "$dir/partyd.service" >&2
        exit 1
    fi
done
if ! command -v systemd-analyze > /dev/null 2>&1; then
    echo "test_systemd_unit: systemd-analyze is not installed: skipped" >&2
    exit 77
fi
if ! out=$(cd "$dir" && systemd-analyze verify --man=no ./partyd.service 2>&1); then
    echo "test_systemd_unit: systemd-analyze verify refused the unit:" >&2
    echo "$out" >&2
    exit 1
fi
# verify exits 0 with warnings about the unit itself on some versions.
if echo "$out" | grep -q 'partyd.service'; then
    echo "test_systemd_unit: systemd-analyze verify warned about the unit:" >&2
    echo "$out" >&2
    exit 1
fi
echo "test_systemd_unit: the unit passes systemd-analyze verify"
