#!/usr/bin/env bash
# A partyd cluster on one machine, for trying it out: a private PostgreSQL,
# three partyd nodes on it and HAProxy in front, all on 127.0.0.1.
#   examples/cluster/run.sh up       start everything; prints "entry URL" and
#                                    one "node NAME PID PORT" line per node
#   examples/cluster/run.sh status   the same lines, for what still runs
#   examples/cluster/run.sh down     stop everything (by pid) and remove the state
# PARTYD: the partyd binary (default: build/partyd, else partyd on PATH).
# PARTYD_CLUSTER_DIR: where the state lives (default /tmp/partyd-cluster).
# Logs there: n1.log, n2.log, n3.log (the nodes), pg/log (PostgreSQL) and
# haproxy.log (HAProxy's stderr: its warnings and alerts, among them each
# server's state change, "Server partyd/n2 is DOWN, reason: ...").
# Needs the server binaries of PostgreSQL and HAProxy (scripts/deps.sh --test).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${PARTYD_CLUSTER_DIR:-/tmp/partyd-cluster}
nodes=(n1 n2 n3)

partyd_bin() {
  if [ -n "${PARTYD:-}" ]; then echo "$PARTYD"
  elif [ -x "$here/../../build/partyd" ]; then echo "$here/../../build/partyd"
  else command -v partyd; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# 1 if the pid in a file runs (a zombie left for an init that does not
# reap it counts as gone).
running() {
  kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
alive() { [ -f "$1" ] && running "$(cat "$1")"; }

# Waits (bounded) for a log file to contain a line.
wait_for() {
  local file=$1 needle=$2 i
  for i in $(seq 100); do
    grep -q "$needle" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: no '$needle' in $file:" >&2
  tail -n 20 "$file" >&2 || true
  return 1
}

# Stops a process by the pid in a file: SIGTERM, then waits up to 15 s.
stop_pid() {
  local file=$1 pid i
  alive "$file" || return 0
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do running "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

status() {
  alive "$dir/haproxy.pid" && echo "entry http://127.0.0.1:$(cat "$dir/entry.port")"
  for n in "${nodes[@]}"; do
    alive "$dir/$n.pid" && echo "node $n $(cat "$dir/$n.pid") $(cat "$dir/$n.port")"
  done
  return 0
}

down() {
  local i
  stop_pid "$dir/haproxy.pid"
  for n in "${nodes[@]}"; do stop_pid "$dir/$n.pid"; done
  if alive "$dir/pg.pid"; then
    # SIGINT: PostgreSQL's fast shutdown.
    kill -INT "$(cat "$dir/pg.pid")" 2>/dev/null || true
    for i in $(seq 300); do alive "$dir/pg.pid" || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}

up() {
  local partyd bindir as=() pg_port entry n port ports=()
  if [ -e "$dir" ]; then
    echo "run.sh: $dir exists: run.sh down first" >&2
    exit 1
  fi
  partyd=$(partyd_bin) || { echo "run.sh: no partyd (build it, or set PARTYD)" >&2; exit 1; }
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bindir/initdb" ] || { echo "run.sh: no PostgreSQL server binaries" >&2; exit 1; }
  command -v haproxy >/dev/null || { echo "run.sh: no haproxy" >&2; exit 1; }
  mkdir -p "$dir"
  trap 'down' ERR

  # PostgreSQL, as nobody when root (it refuses to run as root).
  mkdir "$dir/pg"
  if [ "$(id -u)" -eq 0 ]; then
    chown nobody "$dir/pg"
    as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env)
  fi
  "${as[@]}" "$bindir/initdb" -D "$dir/pg/data" -A trust -U postgres -E UTF8 --no-locale \
    >"$dir/pg/initdb.log" 2>&1
  pg_port=$(free_port)
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w -t 60 -o \
    "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$dir/pg" start >/dev/null
  head -n 1 "$dir/pg/data/postmaster.pid" >"$dir/pg.pid"
  store="postgresql://postgres@127.0.0.1:$pg_port/postgres"

  # The nodes: same database, own data directory and port each.
  for n in "${nodes[@]}"; do
    port=$(free_port)
    echo "$port" >"$dir/$n.port"
    # --proxy-protocol: HAProxy names each client in a PROXY v2 header
    # (haproxy.cfg, send-proxy-v2); a node is reached through it only.
    "$partyd" --port "$port" --data "$dir/$n" --store "$store" --node "$n" --builtins all \
      --proxy-protocol \
      >"$dir/$n.log" 2>&1 </dev/null &
    echo $! >"$dir/$n.pid"
    ports+=("$port")
  done
  for n in "${nodes[@]}"; do wait_for "$dir/$n.log" "listening on"; done

  # HAProxy: every request of a room to one node (consistent hash on the
  # room key of DESIGN.md D8: lower(party) + "/" + the decoded room name).
  entry=$(free_port)
  echo "$entry" >"$dir/entry.port"
  sed -e "s#@ENTRY@#$entry#" -e "s#@N1@#${ports[0]}#" -e "s#@N2@#${ports[1]}#" \
      -e "s#@N3@#${ports[2]}#" "$here/haproxy.cfg" >"$dir/haproxy.cfg"
  haproxy -c -q -f "$dir/haproxy.cfg"
  # In the foreground (-db) under this script's control, not as a daemon:
  # its stderr, where it reports each server going DOWN or UP, stays open
  # into haproxy.log for users (and tests) to read.
  haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 </dev/null &
  echo $! >"$dir/haproxy.pid"
  # Ready once its listener takes a connection (bounded; it may fail to bind).
  for n in $(seq 100); do
    alive "$dir/haproxy.pid" || { echo "run.sh: haproxy ended:" >&2; cat "$dir/haproxy.log" >&2; false; }
    (exec 3<>"/dev/tcp/127.0.0.1/$entry") 2>/dev/null && break
    [ "$n" -lt 100 ] || { echo "run.sh: haproxy does not listen on $entry" >&2; false; }
    sleep 0.1
  done
  trap - ERR
  status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
