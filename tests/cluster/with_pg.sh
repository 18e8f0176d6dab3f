#!/usr/bin/env bash
# Runs a command next to a private PostgreSQL server: initdb into a new
# temporary directory (as nobody when run as root: the server refuses
# root), started on a free loopback port with its socket in that
# directory, and stopped by its pid when the command ends, pass or fail.
# The command sees PARTYD_TEST_PG=postgresql://postgres@127.0.0.1:PORT/postgres
# and PARTYD_TEST_PG_BIN (the server's bin directory). The server does not
# fsync (tests need no power-loss safety) unless PARTYD_TEST_PG_FSYNC=on
# (benchmarks).
#   tests/cluster/with_pg.sh COMMAND [ARGS...]
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "with_pg: no PostgreSQL server binaries (scripts/deps.sh --test installs them)" >&2
  exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-pg.XXXXXX")
as=()
if [ "$(id -u)" -eq 0 ]; then
  chown nobody "$tmp"
  as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env)
fi
pid=""
stop() {
  status=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true # fast shutdown
    # Waits for the postmaster to exit (tail wakes when the pid is gone).
    timeout 30 tail --pid="$pid" -f /dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  [ $status -eq 0 ] || { echo "with_pg: server log:" >&2; tail -n 30 "$tmp/log" >&2 || true; }
  rm -rf "$tmp"
  exit $status
}
trap stop EXIT
trap 'exit 130' INT TERM

"${as[@]}" "$bindir/initdb" -D "$tmp/data" -A trust -U postgres -E UTF8 --no-locale \
  >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; exit 1; }
# A free port: the kernel picks one, the server binds it a moment later;
# another process taking it in between makes pg_ctl fail, and we try again.
for attempt in 1 2 3 4 5; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if "${as[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/log" -w -t 60 -o \
      "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$tmp -c fsync=${PARTYD_TEST_PG_FSYNC:-off} -c max_connections=200" \
      start >/dev/null; then
    pid=$(head -n 1 "$tmp/data/postmaster.pid")
    break
  fi
done
[ -n "$pid" ] || { echo "with_pg: the server did not start" >&2; exit 1; }

export PARTYD_TEST_PG="postgresql://postgres@127.0.0.1:$port/postgres"
export PARTYD_TEST_PG_BIN="$bindir"
"$@"
