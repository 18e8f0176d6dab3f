#!/usr/bin/env bash
# examples/cluster/run.sh end to end: up prints the entry and three nodes;
# rooms answer through HAProxy, each from the node that owns it (its PROXY
# v2 headers, health checks included, accepted by --proxy-protocol nodes,
# which close a connection without one); after a
# node is killed (kill -9) every room answers again from the others; down
# stops every process it started and removes its state.
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
# not own it would answer 503).
all_rooms_answer() {
  local i code
  for i in $(seq 20); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$entry/parties/counter/room-$i")
    [ "$code" = 200 ] || return 1
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
kill -KILL "$victim"
# HAProxy marks it down within a second or so and the others take its
# rooms; asked again until then (bounded).
for attempt in $(seq 50); do
  all_rooms_answer && break
  [ "$attempt" -lt 50 ] || { echo "FAIL: rooms did not move off the killed node" >&2; exit 1; }
  sleep 0.2
done
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
