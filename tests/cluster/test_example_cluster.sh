#!/usr/bin/env bash
# examples/cluster/run.sh end to end: up prints the entry and three nodes;
# rooms answer through HAProxy, each from the node that owns it (its PROXY
# v2 headers, health checks included, accepted by --proxy-protocol nodes,
# which close a connection without one); after a
# node is killed (kill -9) and HAProxy says so in run.sh's haproxy.log,
# every room answers from the others; down stops every process it started
# and removes its state.
#   test_example_cluster.sh PARTYD
set -euo pipefail
export PARTYD=$1
export PARTYD_CLUSTER_DIR
PARTYD_CLUSTER_DIR=$(mktemp -u "${TMPDIR:-/tmp}/partyd-example-cluster.XXXXXX")
run=$(cd "$(dirname "$0")/../../examples/cluster" && pwd)/run.sh
trap '"$run" down' EXIT

out=$("$run" up)
echo "$out"
entry=$(echo "$out" | awk '/^entry /{print $2}')
[ -n "$entry" ] || { echo "FAIL: no entry line" >&2; exit 1; }
[ "$(echo "$out" | grep -c '^node n[123] [0-9]* [0-9]*$')" -eq 3 ] || { echo "FAIL: not 3 node lines" >&2; exit 1; }

# Every room answers through the entry (a room reached on a node that does
# not own it would answer 503), and from none of the nodes named in $1
# (X-Partyd-Node names the node that answered).
all_rooms_answer() {
  local i code node
  for i in $(seq 20); do
    read -r code node < <(curl -s -o /dev/null -w '%{http_code} %header{x-partyd-node}\n' \
      "$entry/parties/counter/room-$i")
    [ "$code" = 200 ] || { echo "room-$i answered $code" >&2; return 1; }
    case " ${1:-} " in *" $node "*) echo "room-$i answered from $node" >&2; return 1 ;; esac
  done
}
all_rooms_answer || { echo "FAIL: a room did not answer 200" >&2; exit 1; }
# The same room in other spellings (party case, percent-encoding, query,
# the Agents clients' prefix) is answered by the same node: HAProxy hashes
# the key partyd derives (DESIGN.md D8). Each answer names its node
# (X-Partyd-Node); a spelling HAProxy sent elsewhere would be answered by
# another node (after a hand-off), so the names would differ.
node_of() {
  curl -s -D - -o /dev/null "$entry$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-partyd-node" {print $2}'
}
home=$(node_of /parties/counter/room-1)
[ -n "$home" ] || { echo "FAIL: /parties/counter/room-1 named no node" >&2; exit 1; }
for target in /parties/Counter/room-1 /parties/counter/room-%31 "/parties/counter/room-1?_pk=x" \
  /agents/counter/room-1 /agents/Counter/room%2D1; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$entry$target")
  [ "$code" = 200 ] || { echo "FAIL: $target answered $code" >&2; exit 1; }
  node=$(node_of "$target")
  [ "$node" = "$home" ] || { echo "FAIL: $target went to node '$node', /parties/counter/room-1 to '$home'" >&2; exit 1; }
done

# A node takes only connections that start with a PROXY header (HAProxy's).
n1_port=$(echo "$out" | awk '/^node n1 /{print $4}')
if curl -s -o /dev/null "http://127.0.0.1:$n1_port/_partyd/health"; then
  echo "FAIL: a node answered a request without a PROXY header" >&2; exit 1
fi
code=$(curl -s --haproxy-protocol -o /dev/null -w '%{http_code}' "http://127.0.0.1:$n1_port/_partyd/health")
[ "$code" = 200 ] || { echo "FAIL: a node with a PROXY header answered $code" >&2; exit 1; }

victim=$(echo "$out" | awk '/^node n2 /{print $3}')
# HAProxy reports each server state change on its stderr, which run.sh
# keeps in haproxy.log; only lines after the kill count.
log=$PARTYD_CLUSTER_DIR/haproxy.log
seen=$(wc -l <"$log")
kill -KILL "$victim"
# Waits for HAProxy's own line saying n2 is down (its checks fail twice);
# tail -F blocks until the line comes, ctest's timeout bounds a hang.
# Before that line, n2's rooms may already answer from n1 or n3: its
# listener is gone with it, so a connection to it is refused at once and
# HAProxy retries on the next server of the ring (option redispatch 1),
# which takes the room once n2's database session (and its lock) ended.
exec 3< <(exec tail -n +$((seen + 1)) -F "$log" 2>/dev/null)
tail_pid=$!
if ! grep -q -m1 'Server partyd/n2 is DOWN' <&3; then
  echo "FAIL: no 'Server partyd/n2 is DOWN' in $log:" >&2; cat "$log" >&2; exit 1
fi
kill "$tail_pid"
exec 3<&-
# Now n2 is out of the ring: every room answers, each from n1 or n3.
all_rooms_answer n2 || { echo "FAIL: rooms did not move off the killed node" >&2; exit 1; }
status=$("$run" status)
echo "$status" | grep -q '^node n2 ' && { echo "FAIL: status lists the killed node" >&2; exit 1; }

pids=$(echo "$status" | awk '/^node /{print $3}')
"$run" down
trap - EXIT
for pid in $pids; do
  if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then echo "FAIL: node pid $pid still runs after down" >&2; exit 1; fi
done
[ ! -e "$PARTYD_CLUSTER_DIR" ] || { echo "FAIL: $PARTYD_CLUSTER_DIR left behind" >&2; exit 1; }
echo "ok"
