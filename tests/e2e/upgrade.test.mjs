// Upgrades that keep every connection: partyd (--threads 2) serves WebSocket
// clients (ws and partysocket) of echo, chat, counter and a hibernating
// party with continuous sequence-numbered traffic while SIGUSR2 replaces
// it with a new process, several times in a row. No client may see a close
// or an error, nothing may be lost, duplicated or reordered, counters keep
// their values, connection state and tags survive, connections opened
// during an upgrade work, an idle keep-alive HTTP connection is reused
// after it; and upgrades to broken binaries (one that exits at start, one
// whose party does not load, one that dies after adopting half the
// connections, one that does not know the record version) leave the
// running process serving every client.
//
// PARTYD_UPGRADE_CLIENTS (default 1000) and PARTYD_UPGRADES (default 5)
// size it; PARTYD_WRAPPER runs every partyd (the new ones too) under e.g.
// valgrind (make test-valgrind: 100 clients, 2 upgrades).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AgentClient } from 'agents/client';
import PartySocket from 'partysocket';
import WS from 'ws';
import { tail, withTimeout } from './helpers.mjs';

const WRAPPER = process.env.PARTYD_WRAPPER ? process.env.PARTYD_WRAPPER.split(/\s+/) : [];
const N = Number(process.env.PARTYD_UPGRADE_CLIENTS ?? (WRAPPER.length > 0 ? 100 : 1000));
const UPGRADES = Number(process.env.PARTYD_UPGRADES ?? (WRAPPER.length > 0 ? 2 : 5));
const SLOW = WRAPPER.length > 0 ? 10 : 1; // valgrind runs partyd ~20x slower
const GAP_MS = 200 * SLOW; // between one client's messages
const STEP_MS = 60000 * SLOW; // to wait for one upgrade, or for traffic to drain

function envPath(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run these tests through ctest -L e2e)`);
  return value;
}

// ---- the service: a partyd started from a copy of the binary ----------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-upgrade-'));
const exe = path.join(dir, 'partyd');
const so = path.join(dir, 'probe.so');
const hooks = path.join(dir, 'hooks');
const pids = new Set();
let log = '';
let proc = null;
let allExited = null; // resolves once every process of the service has exited
let currentPid = 0;
let port = 0;
const logWaiters = new Set();

/** Installs a file at dest in one rename, as a package manager does. */
function install(src, dest, mode = 0o755) {
  const tmp = `${dest}.new`;
  fs.copyFileSync(src, tmp);
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, dest);
}

function installText(text, dest, mode = 0o755) {
  const tmp = `${dest}.new`;
  fs.writeFileSync(tmp, text, { mode });
  fs.renameSync(tmp, dest);
}

function count(re) {
  return (log.match(new RegExp(re.source, 'g')) ?? []).length;
}

/** Waits until re has matched the log n times; resolves with the last match. */
function waitLog(re, n = 1, ms = STEP_MS) {
  let waiter;
  const p = new Promise((resolve) => {
    waiter = () => {
      if (count(re) < n) return;
      const all = [...log.matchAll(new RegExp(re.source, 'g'))];
      resolve(all[n - 1]);
    };
  });
  logWaiters.add(waiter);
  waiter();
  return withTimeout(p, ms, () => `partyd's log never matched ${re} ${n} times:\n${tail(log, 80)}`)
    .finally(() => logWaiters.delete(waiter));
}

async function startService() {
  fs.mkdirSync(hooks);
  install(envPath('PARTYD'), exe);
  install(envPath('PROBE_PARTY'), so, 0o644);
  const args = ['--port', '0', '--host', '127.0.0.1', '--data', path.join(dir, 'data'),
    '--threads', '2', '--durability', 'normal', '--party', `probe=${so}`, '--log-level', 'info'];
  const env = { ...process.env, PARTYD_PROBE_HIBERNATE: '1', PARTYD_PROBE_RPC: '1', PARTYD_TEST_HOOKS: hooks };
  // Under a wrapper, the processes an upgrade starts run under it too.
  const wrapper = WRAPPER.length > 0 && WRAPPER[0].endsWith('valgrind')
    ? [...WRAPPER, '--trace-children=yes'] : WRAPPER;
  proc = wrapper.length > 0
    ? spawn(wrapper[0], [...wrapper.slice(1), exe, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(exe, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  currentPid = proc.pid;
  pids.add(proc.pid);
  proc.stderr.setEncoding('utf8');
  allExited = new Promise((resolve) => proc.stderr.once('end', resolve));
  // Every process of the service writes here: the new ones inherit the pipe.
  proc.stderr.on('data', (chunk) => {
    log += chunk;
    for (const w of [...logWaiters]) w();
  });
  const m = await waitLog(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
  port = Number(m[1]);
}

/**
 * SIGUSR2 to the serving process; resolves once the new one serves and the
 * old one has stopped. Returns the number of connections it adopted.
 */
async function upgrade(duringUpgrade = () => {}) {
  const adopted = count(/adopted (\d+) connections in [\d.]+ ms; serving \(pid (\d+)\)/);
  const stopped = count(/ info {2}stopped/);
  process.kill(currentPid, 'SIGUSR2');
  const opened = duringUpgrade();
  const m = await waitLog(/adopted (\d+) connections in [\d.]+ ms; serving \(pid (\d+)\)/, adopted + 1);
  currentPid = Number(m[2]);
  pids.add(currentPid);
  await waitLog(/ info {2}stopped/, stopped + 1);
  await opened;
  return Number(m[1]);
}

/** SIGUSR2 to an upgrade that must fail; resolves once the failure is logged. */
async function failedUpgrade(why) {
  const failed = count(/upgrade failed: /);
  const back = count(/serves as before; SIGUSR2 may try again/);
  process.kill(currentPid, 'SIGUSR2');
  const m = await waitLog(/upgrade failed: ([^\n]*)/, failed + 1);
  assert.match(m[1], why, tail(log, 30));
  assert.match(m[1], new RegExp(`pid ${currentPid}\\) goes on serving`));
  await waitLog(/serves as before; SIGUSR2 may try again/, back + 1);
}

/** Resolves once every ping-pong client has had a reply since now. */
function progress() {
  const since = clients.map((c) => c.received);
  return withTimeout(Promise.all(clients.map((c, i) => (c instanceof ChatClient
    ? Promise.resolve()
    : new Promise((resolve) => {
      const check = () => {
        if (c.received > since[i]) resolve();
        else c.onProgress = check;
      };
      check();
    })))), STEP_MS, 'every client to get a reply');
}

after(async () => {
  // PARTYD_UPGRADE_LOG: where to keep the service's log (bench/upgrade.sh reads it).
  if (process.env.PARTYD_UPGRADE_LOG) fs.writeFileSync(process.env.PARTYD_UPGRADE_LOG, log);
  for (const c of clients) c.stop();
  for (const c of clients) c.ws.close();
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- clients -------------------------------------------------------------------

const clients = [];
const failures = [];

function fail(client, what) {
  if (failures.length < 20) failures.push(`${client.id}: ${what}`);
}

/** One client: a socket, what it expects next, and its own traffic. */
class Client {
  constructor(kind, id, url, options = {}) {
    this.kind = kind;
    this.id = id;
    this.seq = 0;
    this.inFlight = null; // the reply a ping-pong client waits for
    this.stopped = false;
    this.timer = null;
    this.received = 0;
    this.lastFrom = new Map(); // chat: sender -> last seq seen
    this.waiters = [];
    this.early = []; // what arrived before the client started its traffic
    this.started = false;
    if (options.partysocket) {
      this.ws = new PartySocket({
        host: `127.0.0.1:${port}`, party: options.party, room: options.room, id,
        WebSocket: WS, maxRetries: 0, startClosed: false,
      });
    } else {
      this.ws = new WS(url);
    }
    this.opened = new Promise((resolve, reject) => {
      this.ws.addEventListener('open', () => resolve(), { once: true });
      this.ws.addEventListener('error', () => reject(new Error(`${id}: could not connect`)), { once: true });
    });
    this.ws.addEventListener('close', (ev) => {
      if (!this.closing) fail(this, `closed (${ev.code} ${ev.reason})`);
    });
    this.ws.addEventListener('error', (ev) => fail(this, `error ${ev.message ?? ''}`));
    this.ws.addEventListener('message', (ev) => this.onMessage(String(ev.data)));
  }

  send(text) {
    this.ws.send(text);
  }

  /** Resolves with the next message for which test(text) holds. */
  expect(test) {
    const i = this.early.findIndex(test);
    if (i >= 0) return Promise.resolve(this.early.splice(i, 1)[0]);
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }

  onMessage(text) {
    this.received++;
    this.onProgress?.();
    for (let i = 0; i < this.waiters.length; i++) {
      if (this.waiters[i].test(text)) {
        const [w] = this.waiters.splice(i, 1);
        w.resolve(text);
        return;
      }
    }
    if (!this.started) {
      this.early.push(text);
      return;
    }
    this.handle(text);
  }

  handle(text) {
    if (this.inFlight !== null) {
      if (text !== this.inFlight) fail(this, `expected ${JSON.stringify(this.inFlight)}, got ${JSON.stringify(text)}`);
      this.inFlight = null;
      this.settle?.();
      if (!this.stopped) this.timer = setTimeout(() => this.next(), GAP_MS * (0.5 + Math.random()));
      return;
    }
    fail(this, `unexpected ${JSON.stringify(text)}`);
  }

  start() {
    this.started = true;
    for (const text of this.early.splice(0)) this.handle(text);
    this.timer = setTimeout(() => this.next(), GAP_MS * Math.random());
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.closing = true;
  }

  /** Resolves once no reply is awaited. */
  drained() {
    if (this.inFlight === null) return Promise.resolve();
    return new Promise((resolve) => { this.settle = resolve; });
  }
}

/** echo: the message comes back as sent. */
class EchoClient extends Client {
  next() {
    this.seq++;
    this.inFlight = `${this.id}:${this.seq}`;
    this.send(this.inFlight);
  }
}

/** probe (a hibernating party): "echo:<text>" back; state and tags kept. */
class ProbeClient extends Client {
  handle(text) {
    // With RPC methods the probe speaks the Agents protocol too (its
    // identity and state frames): not part of this traffic.
    if (text.startsWith('{"type":"cf_agent')) return;
    super.handle(text);
  }

  next() {
    this.seq++;
    this.send(`p${this.seq}`);
    this.inFlight = `echo:p${this.seq}`;
  }
}

/** counter: each message adds one; the reply is the new value. */
class CounterClient extends Client {
  next() {
    this.seq++;
    this.inFlight = String(this.seq);
    this.send('inc');
  }
}

/** chat: every member's messages reach every other member, in order. */
class ChatClient extends Client {
  next() {
    this.seq++;
    this.send(`${this.id}:${this.seq}`);
    if (!this.stopped) this.timer = setTimeout(() => this.next(), GAP_MS * (0.5 + Math.random()));
  }

  handle(text) {
    const [from, seqText] = text.split(':');
    const seq = Number(seqText);
    // A member that joined later is first heard from mid-sequence.
    const last = this.lastFrom.get(from) ?? seq - 1;
    if (seq !== last + 1) fail(this, `from ${from}: expected ${last + 1}, got ${seq}`);
    this.lastFrom.set(from, seq);
    this.settle?.();
  }

  drained(members) {
    const done = () => members.every((m) => m === this || (this.lastFrom.get(m.id) ?? 0) === m.seq);
    if (done()) return Promise.resolve();
    return new Promise((resolve) => {
      this.settle = () => {
        if (done()) resolve();
      };
    });
  }
}

const run = process.pid.toString(36);
let made = 0;

function makeClient(i) {
  const id = `${run}-${made++}`;
  const base = `ws://127.0.0.1:${port}/parties`;
  switch (i % 10) {
    case 0: case 1: case 2: case 3:
      return new EchoClient('echo', id, `${base}/echo/e${i % 50}?_pk=${id}`);
    case 4:
      return new EchoClient('echo-ps', id, null, { partysocket: true, party: 'echo', room: `e${i % 50}` });
    case 5: case 6:
      return new ProbeClient('probe', id, `${base}/probe/h${i % 20}-${run}?_pk=${id}&tags=t${i}`);
    case 7:
      return new CounterClient('counter', id, `${base}/counter/c-${id}?_pk=${id}`);
    default:
      return new ChatClient('chat', id, `${base}/chat/ch${Math.floor(i / 10) % 40}-${run}?_pk=${id}`);
  }
}

/** Opens clients in batches (the listen backlog is 511) and starts them. */
async function openClients(n) {
  const made = [];
  for (let i = 0; i < n; i += 100) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 100); k++) batch.push(makeClient(clients.length + made.length + batch.length));
    made.push(...batch);
    await withTimeout(Promise.all(batch.map((c) => c.opened)), STEP_MS, 'clients to connect');
  }
  for (const c of made) {
    if (c instanceof ProbeClient) {
      const hello = await withTimeout(c.expect((t) => t.startsWith('hello:')), STEP_MS, 'probe hello');
      assert.match(hello, new RegExp(`^hello:${c.id}:`));
      c.send(`state:S-${c.id}`);
    }
  }
  clients.push(...made);
  for (const c of made) c.start();
  return made;
}

function assertNoFailures(when) {
  assert.deepEqual(failures, [], `${when}: clients saw ${failures.length} problems:\n${failures.join('\n')}\n${tail(log, 40)}`);
}

/** An HTTP keep-alive request; resolves with {status, body, reused}. */
function get(agent, urlPath) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body, reused: req.reusedSocket }));
    });
    req.on('error', reject);
  }), STEP_MS, `GET ${urlPath}`);
}

// ---- raw sockets: connections caught in the middle of something -------------

/** A client WebSocket frame (masked). */
function frame(opcode, payload, fin = true) {
  const mask = crypto.randomBytes(4);
  const len = payload.length;
  let head;
  if (len < 126) {
    head = Buffer.from([0, 0x80 | len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

/** A raw TCP client that reads what the server sends as a byte stream. */
class RawClient {
  constructor() {
    this.chunks = [];
    this.total = 0;
    this.firstData = null;
    this.closed = false;
    this.onData = null;
  }

  async connect() {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d) => {
      this.chunks.push(d);
      this.total += d.length;
      this.firstData?.();
      this.onData?.();
    });
    this.socket.on('close', () => { this.closed = true; this.onData?.(); });
    this.socket.on('error', () => {});
    await withTimeout(new Promise((resolve) => this.socket.once('connect', resolve)), STEP_MS, 'connect');
  }

  write(buf) {
    this.socket.write(buf);
  }

  /** The first n bytes of what arrived (joined once). */
  peek(n) {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0].subarray(0, n);
  }

  take(n) {
    const out = Buffer.from(this.peek(n));
    this.chunks[0] = this.chunks[0].subarray(n);
    if (this.chunks[0].length === 0) this.chunks.shift();
    this.total -= n;
    return out;
  }

  /** Resolves once parse() returns something other than undefined. */
  wait(parse, what) {
    return withTimeout(new Promise((resolve, reject) => {
      this.onData = () => {
        const v = this.total > 0 ? parse() : undefined;
        if (v !== undefined) {
          this.onData = null;
          resolve(v);
        } else if (this.closed) {
          reject(new Error(`${what}: the connection closed`));
        }
      };
      this.onData();
    }), STEP_MS, what);
  }

  /** An HTTP response head and its Content-Length body, as text. */
  response() {
    return this.wait(() => {
      const text = this.peek(this.total).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const m = /content-length: *(\d+)/i.exec(text.slice(0, end));
      const need = end + 4 + (m ? Number(m[1]) : 0);
      if (this.total < need) return undefined;
      return this.take(need).toString('utf8');
    }, 'an HTTP response');
  }

  /** The next whole server frame: {opcode, payload}. */
  frame() {
    return this.wait(() => {
      if (this.total < 2) return undefined;
      const h = this.peek(2);
      let len = h[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (this.total < 4) return undefined;
        len = this.peek(4).readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (this.total < 10) return undefined;
        len = Number(this.peek(10).readBigUInt64BE(2));
        at = 10;
      }
      if (this.total < at + len) return undefined;
      const all = this.take(at + len);
      return { opcode: all[0] & 0x0f, payload: all.subarray(at) };
    }, 'a WebSocket frame');
  }

  async upgradeTo(target) {
    await this.connect();
    this.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      'Sec-WebSocket-Version: 13\r\n\r\n');
    assert.match(await this.response(), /^HTTP\/1\.1 101 /);
  }
}

test(`${N} clients stay connected through ${UPGRADES} upgrades and 4 failed ones`, { timeout: 30 * STEP_MS }, async () => {
  await startService();
  await openClients(N);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const first = await get(agent, `/parties/counter/http-${run}`);
  assert.equal(first.status, 200);

  // Reminders (schedules) come due before, during and after the first
  // upgrades: each fires once, none is lost while the service changes hands.
  const reminders = new WS(`ws://127.0.0.1:${port}/parties/reminder/rem-${run}?_pk=rem`);
  const fired = new Map();
  reminders.on('message', (data) => {
    const note = JSON.parse(String(data));
    if (note.type === 'reminder') fired.set(note.name, (fired.get(note.name) ?? 0) + 1);
    reminders.emit('fired');
  });
  reminders.on('close', (code) => failures.push(`reminders: closed (${code})`));
  await withTimeout(new Promise((resolve) => reminders.once('open', resolve)), STEP_MS, 'reminders');
  const REMINDERS = 20;
  for (let k = 0; k < REMINDERS; k++) {
    const res = await withTimeout(new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', agent: false,
        path: `/parties/reminder/rem-${run}?in=${50 * (k + 1) * SLOW}&name=s${k}` }, (r) => {
        r.resume();
        r.on('end', () => resolve(r.statusCode));
      });
      req.on('error', reject);
      req.end('payload');
    }), STEP_MS, 'a reminder');
    assert.equal(res, 201);
  }

  // An RPC call still open when the upgrade begins ends with an error
  // reply; the connection stays, and the next call is answered by the new
  // process.
  const rpc = new AgentClient({
    agent: 'probe', name: `rpc-${run}`, host: `127.0.0.1:${port}`, WebSocket: WS, maxRetries: 0,
  });
  let rpcClosing = false;
  rpc.addEventListener('close', () => { if (!rpcClosing) failures.push('rpc client: closed'); });
  await withTimeout(rpc.ready, STEP_MS, 'the agent to be ready');
  const hung = rpc.call('hang', []);
  hung.catch(() => {}); // judged after the upgrade
  assert.equal(await rpc.call('ok', []), true); // calls run in order: "hang" is open

  for (let u = 1; u <= UPGRADES; u++) {
    let during = [];
    const adopted = await upgrade(() => openClients(5).then((made) => { during = made; }));
    assert.ok(adopted >= N, `upgrade ${u}: adopted ${adopted} connections, fewer than the ${N} clients`);
    assert.equal(during.length, 5, 'connections opened during the upgrade');
    if (u === 1) {
      await assert.rejects(withTimeout(hung, STEP_MS, 'the open call'),
        { message: 'partyd is restarting; the call was not finished' });
      assert.equal(await withTimeout(rpc.call('ok', []), STEP_MS, 'a call after the upgrade'), true);
    }
    await progress(); // traffic flows through the new process
    assertNoFailures(`upgrade ${u}`);
    // The idle keep-alive connection moved too: it is reused.
    const again = await get(agent, `/parties/counter/http-${run}`);
    assert.equal(again.status, 200);
    assert.equal(again.reused, true, `upgrade ${u}: the keep-alive connection was not reused`);
  }

  // Connections caught in the middle of something move as they are: a
  // partial frame, a fragmented message, a partial HTTP request on a
  // keep-alive connection (each read by the server, as the reply to what
  // was written with it in one piece shows), and output not yet written
  // to a client that stopped reading.
  const partial = new RawClient();
  await partial.upgradeTo(`/parties/echo/raw-${run}?_pk=raw-a`);
  const whole = frame(1, Buffer.from('a frame cut in two by an upgrade'));
  partial.write(Buffer.concat([frame(1, Buffer.from('first')), whole.subarray(0, 12)]));
  assert.equal((await partial.frame()).payload.toString(), 'first');
  const fragments = new RawClient();
  await fragments.upgradeTo(`/parties/echo/raw-${run}?_pk=raw-b`);
  fragments.write(Buffer.concat([frame(1, Buffer.from('first')), frame(1, Buffer.from('frag'), false)]));
  assert.equal((await fragments.frame()).payload.toString(), 'first');
  const request = new RawClient();
  await request.connect();
  request.write(`GET /parties/counter/raw-${run} HTTP/1.1\r\nHost: x\r\n\r\nGET /parties/counter/raw-${run} HT`);
  assert.match(await request.response(), /^HTTP\/1\.1 200 /);
  const slow = new RawClient();
  await slow.upgradeTo(`/parties/probe/raw-${run}?_pk=raw-d`);
  let greeting;
  do greeting = (await slow.frame()).payload.toString(); // the Agents identity may come first
  while (greeting.startsWith('{"type":"cf_agent'));
  assert.match(greeting, /^hello:raw-d:/);
  const BIG = 24 * 1024 * 1024;
  await new Promise((resolve) => {
    slow.firstData = () => {
      slow.firstData = null;
      slow.socket.pause(); // output piles up in partyd's send queue
      resolve();
    };
    slow.write(frame(1, Buffer.from(`big:${BIG}`)));
  });
  const carried = count(/handed \d+ WebSockets and \d+ HTTP connections/);
  assert.ok(await upgrade() >= N);
  const m = [...log.matchAll(/(\d+) with output not yet written, (\d+) with input not yet read whole/g)][carried];
  assert.ok(Number(m[1]) >= 1 && Number(m[2]) >= 3, `records carried output and input: ${m[0]}`);
  partial.write(whole.subarray(12));
  assert.equal((await partial.frame()).payload.toString(), 'a frame cut in two by an upgrade');
  fragments.write(frame(0, Buffer.from('ments'), true));
  assert.equal((await fragments.frame()).payload.toString(), 'fragments');
  request.write('TP/1.1\r\nHost: x\r\n\r\n');
  assert.match(await request.response(), /^HTTP\/1\.1 200 /);
  slow.socket.resume();
  const big = await slow.frame();
  assert.equal(big.payload.length, BIG);
  assert.ok(big.payload.every((byte) => byte === 0x78), 'the big message arrived intact');
  for (const raw of [partial, fragments, request, slow]) raw.socket.destroy();
  await progress();
  assertNoFailures('raw connections');

  // Broken upgrades: the running process goes on serving every client.
  const good = path.join(dir, 'partyd.good');
  fs.copyFileSync(exe, good);
  installText('#!/bin/sh\nexit 1\n', exe);
  await failedUpgrade(/the new process exited with status 1/);
  install(good, exe);
  await progress();

  const goodSo = path.join(dir, 'probe.so.good');
  fs.copyFileSync(so, goodSo);
  installText('not a shared object\n', so, 0o644);
  await failedUpgrade(/the new process exited with status [12]/);
  install(goodSo, so, 0o644);
  await progress();

  fs.writeFileSync(path.join(hooks, 'die-after'), 'half\n');
  // (99: valgrind's status when it found errors in the process it ran)
  await failedUpgrade(/the new process exited with status (3|99)/);
  fs.rmSync(path.join(hooks, 'die-after'));
  await progress();

  fs.writeFileSync(path.join(hooks, 'record-version'), '999\n');
  await failedUpgrade(/record version 999 is not known to this build/);
  fs.rmSync(path.join(hooks, 'record-version'));
  await progress();
  assertNoFailures('failed upgrades');

  // And one more that works.
  assert.ok(await upgrade() >= N);

  // The metrics count the upgrades from process to process, and the
  // failed ones of the process that serves; they name the serving pid.
  const metrics = (await get(agent, '/_partyd/metrics')).body;
  assert.match(metrics, new RegExp(`^partyd_runtime_upgrades_total ${UPGRADES + 2}$`, 'm'));
  assert.match(metrics, /^partyd_runtime_upgrade_failures_total 0$/m);
  assert.match(metrics, new RegExp(`^partyd_runtime_process_id ${currentPid}$`, 'm'));
  assert.match(metrics, /^partyd_runtime_build_info\{version="[^"]+"\} 1$/m);

  // Traffic stops; everything sent arrives.
  for (const c of clients) c.stopped = true;
  for (const c of clients) clearTimeout(c.timer);
  const chats = clients.filter((c) => c instanceof ChatClient);
  await withTimeout(Promise.all(clients.map((c) => {
    if (!(c instanceof ChatClient)) return c.drained();
    const room = c.ws.url.split('?')[0];
    return c.drained(chats.filter((m) => m.ws.url.split('?')[0] === room));
  })), STEP_MS, () => `traffic to drain:\n${failures.join('\n')}`);
  assertNoFailures('after the upgrades');
  await withTimeout(new Promise((resolve) => {
    const check = () => { if (fired.size === REMINDERS) resolve(); };
    reminders.on('fired', check);
    check();
  }), STEP_MS, () => `every reminder to fire: ${[...fired.keys()].join(',')}`);
  for (const [name, times] of fired) assert.equal(times, 1, `reminder ${name} fired ${times} times`);
  reminders.removeAllListeners('close');
  reminders.close();
  assert.equal(await withTimeout(rpc.call('ok', []), STEP_MS, 'a last call'), true);
  rpcClosing = true;
  rpc.close();
  const sent = clients.reduce((n, c) => n + c.seq, 0);
  assert.ok(sent > N, `only ${sent} messages were sent`);

  // Connection state and tags survived every hand-over.
  for (const c of clients.filter((x) => x instanceof ProbeClient)) {
    const state = c.expect((t) => t.startsWith('state:'));
    c.send('getstate');
    assert.equal(await withTimeout(state, STEP_MS, 'getstate'), `state:S-${c.id}`);
    const tags = c.expect((t) => t.startsWith('tags:'));
    c.send('tags');
    assert.match(await withTimeout(tags, STEP_MS, 'tags'), new RegExp(`^tags:${c.id},t\\d+$`));
  }
  // Counters kept their values (each reply was the previous one plus one;
  // the room's count is the number of increments).
  const counter = clients.find((c) => c instanceof CounterClient);
  const res = await get(agent, `/parties/counter/c-${counter.id}`);
  assert.equal(JSON.parse(res.body).count, counter.seq);
  agent.destroy();

  for (const c of clients) c.stop();
  await Promise.all(clients.map((c) => new Promise((resolve) => {
    c.ws.addEventListener('close', resolve, { once: true });
    c.ws.close();
  })));
  process.kill(currentPid, 'SIGTERM');
  // The pipe ends once no process of the service holds it: all exited, and
  // a sanitizer or valgrind report of any of them is in the log.
  await withTimeout(allExited, STEP_MS, () => `partyd to exit:\n${tail(log)}`);
  assert.doesNotMatch(log, /AddressSanitizer|LeakSanitizer|runtime error/);
  // Valgrind's reports name their process: only the one the test hook
  // killed on purpose (its _exit leaves memory behind) may have any.
  const dying = [...log.matchAll(/test hook: process (\d+) dies/g)].map((m) => m[1]);
  const reported = new Set([...log.matchAll(/^==(\d+)==/gm)].map((m) => m[1]));
  for (const pid of reported) assert.ok(dying.includes(pid), `valgrind reported on process ${pid}:\n${tail(log, 60)}`);
});
