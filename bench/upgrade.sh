#!/usr/bin/env bash
# upgrade.sh: what an upgrade (SIGUSR2) costs clients, at 1,000 and 10,000
# WebSocket connections (bench/upgrade.mjs): the hand-over time (signal to
# the new process serving, and how long connections were frozen), the
# longest echo round trip of clients pinging through it, and the longest
# WebSocket open (connect + handshake) while it happens. Builds partyd
# (Release, build/bench), runs BENCH_UPGRADES upgrades per size (default
# 3), prints the JSON lines and writes the table into docs/benchmarks.md.
#
# Environment: BENCH_SIZES (default "1000 10000"), BENCH_UPGRADES.
set -euo pipefail
bench_name=upgrade.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sizes=${BENCH_SIZES:-1000 10000}
upgrades=${BENCH_UPGRADES:-3}
bench_build_release partyd
(cd "$bench_root/tests/e2e" && if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error; fi)

rows=""
for n in $sizes; do
    line=$(node "$bench_root/bench/upgrade.mjs" "$bench_build/partyd" "$n" "$upgrades")
    echo "$line"
    rows+=$(node -e '
        const r = JSON.parse(process.argv[1]);
        const col = (k) => r.runs.map((x) => x[k]).join(" / ");
        console.log(`| ${r.conns} | ${col("handover_ms")} | ${col("frozen_ms")} | ${col("echo_stall_ms")} | ${col("accept_stall_ms")} | ${r.unexpected_closes} |`);
    ' "$line")$'\n'
done

bench_write_doc upgrade "Upgrades: handing connections to a new process" "$(cat <<DOC
\`bench/upgrade.sh\` (\`bench/upgrade.mjs\`): partyd (Release, \`--threads 2\`,
\`--durability normal\`) with N WebSocket clients on echo rooms (20
messages every 10 ms among them), 20 clients pinging echo back to back,
and a new WebSocket opened every 10 ms; $upgrades upgrades (SIGUSR2) one
after the other, each value below per upgrade. *Hand-over*: from the
signal until the new process adopted everything (the new binary's start
included); *frozen*: from the freeze (no socket read) until then; *echo
stall*: the longest echo round trip of the 20 pinging clients from the
signal until 1 s after the new process serves; *accept stall*: the
longest WebSocket open (connect and handshake) in the same window;
*closes*: connections that closed or failed to open (should be 0).
Targets: 10,000 connections handed over in under 1 s, the longest echo
stall under 500 ms at 1,000 connections.

| connections | hand-over ms | frozen ms | echo stall ms | accept stall ms | closes |
|---|---|---|---|---|---|
${rows%$'\n'}

Measured on $(nproc) cores of a shared machine ($(bench_cpu_model)),
revision $(bench_revision).
DOC
)"
