// yjs.mjs: the Yjs benchmark (run by bench/yjs.sh, which builds partyd and
// yjs_merge in Release). Two measurements:
//  1. merge: a log of 20,000 keystroke updates (two clients typing into one
//     Y.Text, with some backspaces, seeded) merged into one update by
//     Y.mergeUpdates in node and by partyd's codec (yjs_merge), same log,
//     median of several runs each; also what a server holding a Y.Doc does
//     (apply every update to a doc, encode it);
//  2. sync: partyd serves the yjs party; a y-websocket client types the
//     20,000 keystrokes (one update each), then new y-websocket clients join
//     one after another and the time from creating the provider to having
//     the whole text is measured.
// Uses the npm packages of tests/yjs (run `npm ci` there first).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const modules = new URL('../tests/yjs/node_modules/', import.meta.url);
const Y = await import(new URL('yjs/dist/yjs.mjs', modules));
const { WebsocketProvider } = await import(new URL('y-websocket/src/y-websocket.js', modules));
const { default: WS } = await import(new URL('ws/wrapper.mjs', modules));

const [partyd, yjsMerge] = process.argv.slice(2);
const KEYS = Number(process.env.BENCH_KEYS ?? 20000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SYNCS = Number(process.env.BENCH_SYNCS ?? 5);

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** KEYS keystroke updates from two clients typing into one text. */
function keystrokes() {
  const r = rng(42);
  const a = new Y.Doc();
  const b = new Y.Doc();
  a.clientID = 1001;
  b.clientID = 2002;
  const log = [];
  for (const [from, to] of [[a, b], [b, a]]) {
    from.on('update', (u, origin) => {
      if (origin !== 'remote') {
        log.push(u);
        Y.applyUpdate(to, u, 'remote');
      }
    });
  }
  const cursors = [0, 0];
  for (let i = 0; i < KEYS; i++) {
    const who = r() < 0.5 ? 0 : 1;
    const doc = who === 0 ? a : b;
    const text = doc.getText('text');
    let at = Math.min(cursors[who], text.length);
    if (r() < 0.08 && at > 0) {
      text.delete(at - 1, 1);
      at--;
    } else {
      text.insert(at, 'abcdefghijklmnopqrstuvwxyz '[Math.floor(r() * 27)]);
      at++;
    }
    cursors[who] = r() < 0.01 ? Math.floor(r() * (text.length + 1)) : at;
  }
  return { log, text: a.getText('text').toString() };
}

function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

function encodeLog(log) {
  const parts = [];
  for (const u of log) {
    let n = u.length;
    const len = [];
    do {
      len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n = Math.floor(n / 128);
    } while (n > 0);
    parts.push(Buffer.from(len), Buffer.from(u));
  }
  return Buffer.concat(parts);
}

async function mergeBench(log) {
  const times = [];
  let merged;
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    merged = Y.mergeUpdates(log);
    times.push(performance.now() - t0);
  }
  // What a server holding a Y.Doc does instead: apply every update, then
  // encode the document.
  const applyTimes = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const doc = new Y.Doc();
    for (const u of log) Y.applyUpdate(doc, u);
    Y.encodeStateAsUpdate(doc);
    applyTimes.push(performance.now() - t0);
    doc.destroy();
  }
  const file = path.join(os.tmpdir(), `yjs-bench-${process.pid}.bin`);
  fs.writeFileSync(file, encodeLog(log));
  const ours = JSON.parse(execFileSync(yjsMerge, [file, String(RUNS)]).toString());
  fs.rmSync(file);
  return { yjs_merge_ms: median(times), yjs_apply_encode_ms: median(applyTimes), yjs_bytes: merged.length, ours };
}

async function startPartyd(dataDir) {
  const proc = spawn(partyd, ['--port', '0', '--host', '127.0.0.1', '--data', dataDir,
    '--durability', 'normal'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const port = await new Promise((resolve, reject) => {
    proc.stderr.on('data', (c) => {
      err += c;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`partyd exited (${code}): ${err}`)));
  });
  return { proc, port };
}

function provider(port, room, doc) {
  return new WebsocketProvider(`ws://127.0.0.1:${port}/parties/yjs`, room, doc, {
    WebSocketPolyfill: WS, disableBc: true,
  });
}

function waitText(doc, want) {
  return new Promise((resolve) => {
    const check = () => {
      if (doc.getText('text').toString() === want) {
        doc.off('update', check);
        resolve();
      }
    };
    doc.on('update', check);
    check();
  });
}

async function syncBench(text) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'yjs-bench-'));
  const { proc, port } = await startPartyd(dataDir);
  const room = `bench-${process.pid}`;
  try {
    // The writer types the same keystrokes, one update per key, as a
    // client would; the room stores each one.
    const writerDoc = new Y.Doc();
    const writer = provider(port, room, writerDoc);
    await new Promise((resolve) => writer.once('sync', resolve));
    const { log } = keystrokes();
    for (const u of log) Y.applyUpdate(writerDoc, u);
    // Everything stored: a reader has it all.
    const probeDoc = new Y.Doc();
    const probe = provider(port, room, probeDoc);
    await waitText(probeDoc, text);
    probe.destroy();
    writer.destroy();
    const times = [];
    for (let i = 0; i < SYNCS; i++) {
      const doc = new Y.Doc();
      const t0 = performance.now();
      const p = provider(port, room, doc);
      await waitText(doc, text);
      times.push(performance.now() - t0);
      p.destroy();
      p.awareness.destroy();
    }
    return { sync_ms: median(times), runs: times.map((t) => Math.round(t * 10) / 10) };
  } finally {
    proc.kill('SIGTERM');
    await new Promise((resolve) => proc.once('exit', resolve));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const { log, text } = keystrokes();
console.error(`${log.length} updates generated; merging`);
const merge = await mergeBench(log);
console.error(`merge: ${JSON.stringify(merge)}; syncing`);
const sync = await syncBench(text);
console.log(JSON.stringify({ keys: KEYS, log_updates: log.length, text_length: text.length, merge, sync }, null, 1));
process.exit(0);
