// bench/upgrade.mjs: what an upgrade (SIGUSR2) costs clients. Starts partyd
// (a copy of the binary given, --threads 2), opens CONNS idle-ish WebSocket
// clients on echo rooms (each sends a message every few seconds), 20 probe
// clients that ping-pong echo messages back to back, and one client that
// opens a new WebSocket every 10 ms; then runs UPGRADES upgrades one after
// the other. Per upgrade: the hand-over time and the time connections were
// frozen (partyd's log), the longest echo round trip of the probes and the
// longest WebSocket open (connect + handshake) from the signal until one
// second after the new process serves. Prints one JSON line.
//
// Usage: node bench/upgrade.mjs PARTYD CONNS UPGRADES
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.join(path.dirname(new URL(import.meta.url).pathname), '../tests/e2e/package.json'));
const WS = require('ws');

const [partydPath, connsArg, upgradesArg] = process.argv.slice(2);
const CONNS = Number(connsArg ?? 1000);
const UPGRADES = Number(upgradesArg ?? 3);
const PROBES = 20;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-bench-upgrade-'));
const exe = path.join(dir, 'partyd');
fs.copyFileSync(partydPath, exe);
fs.chmodSync(exe, 0o755);
let log = '';
const proc = spawn(exe, ['--port', '0', '--data', path.join(dir, 'data'), '--threads', '2',
  '--durability', 'normal', '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
const ended = new Promise((resolve) => proc.stderr.once('end', resolve));
const waiters = new Set();
proc.stderr.setEncoding('utf8');
proc.stderr.on('data', (d) => {
  log += d;
  for (const w of [...waiters]) w();
});

function waitLog(re, n = 1) {
  return new Promise((resolve) => {
    const w = () => {
      const all = [...log.matchAll(new RegExp(re.source, 'g'))];
      if (all.length >= n) {
        waiters.delete(w);
        resolve(all[n - 1]);
      }
    };
    waiters.add(w);
    w();
  });
}

const port = Number((await waitLog(/listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
const url = (room, id) => `ws://127.0.0.1:${port}/parties/echo/${room}?_pk=${id}`;
let closes = 0;

function open(room, id) {
  const ws = new WS(url(room, id));
  ws.on('close', () => { if (!ws.done) closes++; });
  ws.on('error', () => {});
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// The crowd: connections that send now and then.
const crowd = [];
for (let i = 0; i < CONNS; i += 200) {
  const batch = [];
  for (let k = i; k < Math.min(CONNS, i + 200); k++) batch.push(open(`r${k % 100}`, `c${k}`));
  crowd.push(...await Promise.all(batch));
}
const chatter = setInterval(() => {
  for (let k = 0; k < 20; k++) crowd[Math.floor(Math.random() * crowd.length)].send('x');
}, 10);

// Probes: echo round trips back to back; the longest in the window counts.
let window = null; // {rtt, accept} while measuring
const probes = await Promise.all(Array.from({ length: PROBES }, (_, i) => open(`p${i}`, `p${i}`)));
for (const ws of probes) {
  let sentAt = 0;
  const next = () => {
    sentAt = performance.now();
    ws.send('ping');
  };
  ws.on('message', () => {
    const rtt = performance.now() - sentAt;
    if (window !== null && rtt > window.rtt) window.rtt = rtt;
    setTimeout(next, 5);
  });
  next();
}

// New connections every 10 ms: the longest open in the window counts.
let opener = null;
let opened = 0;
function openOne() {
  const t0 = performance.now();
  open('a', `a${opened++}`).then((ws) => {
    const took = performance.now() - t0;
    if (window !== null && took > window.accept) window.accept = took;
    ws.done = true;
    ws.close();
  }, () => { closes++; });
}
opener = setInterval(openOne, 10);

let pid = proc.pid;
const runs = [];
for (let u = 1; u <= UPGRADES; u++) {
  window = { rtt: 0, accept: 0 };
  process.kill(pid, 'SIGUSR2');
  const adopted = await waitLog(/adopted (\d+) connections in [\d.]+ ms; serving \(pid (\d+)\)/, u);
  const took = await waitLog(/hand-over took ([\d.]+) ms \(connections frozen ([\d.]+) ms\)/, u);
  pid = Number(adopted[2]);
  await waitLog(/ info {2}stopped/, u);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the window's tail
  runs.push({ adopted: Number(adopted[1]), handover_ms: Number(took[1]), frozen_ms: Number(took[2]),
    echo_stall_ms: Math.round(window.rtt * 10) / 10, accept_stall_ms: Math.round(window.accept * 10) / 10 });
  window = null;
}
clearInterval(chatter);
clearInterval(opener);
for (const ws of [...crowd, ...probes]) {
  ws.done = true;
  ws.close();
}
process.kill(pid, 'SIGTERM');
await ended;
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ conns: CONNS, upgrades: UPGRADES, unexpected_closes: closes, runs }));
process.exit(0);
