// An upgrade from the previous commit's partyd (OLD_PARTYD, built by
// upgrade_prev.sh) to this build's (PARTYD), as an operator does it: the
// old binary serves WebSocket clients of echo, counter and demo (a
// hibernating party whose connections keep their state) with continuous
// sequence-numbered traffic; this build's binary is installed over the
// path the old one was started from (a new file renamed over it) and
// SIGUSR2 hands everything over. No client may see a close or an error,
// nothing may be lost, duplicated or reordered, counters keep their
// values, and the process that serves afterwards runs the new file.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WS from 'ws';
import { getJson, httpRequest, tail, withTimeout } from './helpers.mjs';

const STEP_MS = 60000; // to wait for one step (start, upgrade, traffic)
const GAP_MS = 20; // between one client's reply and its next message
const ECHO = 30;
const COUNTERS = 10;
const DEMO_ROOMS = 5; // two members each

function envPath(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run this test through ctest -R upgrade_prev)`);
  return value;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-upgrade-prev-'));
const exe = path.join(dir, 'partyd');
const pids = new Set();
const clients = [];
const failures = [];
let log = '';
const logWaiters = new Set();

/** Installs src at dest in one rename, as a package manager does: the
 * running file is not written to ("text file busy"), only unlinked. */
function install(src, dest) {
  const tmp = `${dest}.new`;
  fs.copyFileSync(src, tmp);
  fs.chmodSync(tmp, 0o755);
  fs.renameSync(tmp, dest);
}

function count(re) {
  return (log.match(new RegExp(re.source, 'g')) ?? []).length;
}

/** Waits until re has matched the log n times; resolves with the nth match. */
function waitLog(re, n = 1) {
  let waiter;
  const p = new Promise((resolve) => {
    waiter = () => {
      if (count(re) >= n) resolve([...log.matchAll(new RegExp(re.source, 'g'))][n - 1]);
    };
  });
  logWaiters.add(waiter);
  waiter();
  return withTimeout(p, STEP_MS, () => `partyd's log never matched ${re} ${n} times:\n${tail(log, 60)}`)
    .finally(() => logWaiters.delete(waiter));
}

function fail(client, what) {
  if (failures.length < 20) failures.push(`${client.id}: ${what}`);
}

/**
 * A ping-pong client: sends its next sequence-numbered message once the
 * reply to the previous one came, and checks each reply is the one due.
 */
class Client {
  constructor(id, url) {
    this.id = id;
    this.seq = 0;
    this.due = null; // the reply awaited, as check() takes it
    this.received = 0;
    this.stopped = false;
    this.closing = false;
    this.timer = null;
    this.onProgress = null;
    this.settle = null;
    this.ws = new WS(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', (err) => reject(new Error(`${id}: could not connect: ${err.message}`)));
    });
    this.ws.on('close', (code, reason) => {
      if (!this.closing) fail(this, `closed (${code} ${reason})`);
    });
    this.ws.on('error', (err) => fail(this, `error ${err.message}`));
    this.ws.on('message', (data) => this.onMessage(String(data)));
  }

  onMessage(text) {
    const reply = this.reply(text);
    if (reply === undefined) return; // not part of the traffic
    this.received++;
    if (this.due === null) {
      fail(this, `unexpected ${JSON.stringify(text)}`);
      return;
    }
    if (reply !== this.due) fail(this, `expected ${JSON.stringify(this.due)}, got ${JSON.stringify(reply)}`);
    this.due = null;
    this.onProgress?.();
    this.settle?.();
    if (!this.stopped) this.timer = setTimeout(() => this.next(), GAP_MS);
  }

  /** What a message says in reply, or undefined if it is no reply. */
  reply(text) {
    return text;
  }

  start() {
    this.next();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Resolves once no reply is awaited. */
  drained() {
    if (this.due === null) return Promise.resolve();
    return new Promise((resolve) => { this.settle = () => { if (this.due === null) resolve(); }; });
  }
}

/** echo: each message comes back as sent. */
class EchoClient extends Client {
  next() {
    this.seq++;
    this.due = `${this.id}:${this.seq}`;
    this.ws.send(this.due);
  }
}

/** counter: each message adds one; the reply is the room's new count. */
class CounterClient extends Client {
  constructor(id, url, room) {
    super(id, url);
    this.room = room;
  }

  next() {
    this.seq++;
    this.due = String(this.seq);
    this.ws.send('inc');
  }
}

/**
 * demo (hibernates; a member's name is its connection state): each chat
 * message is stored and sent to every member of the room, the sender too.
 * A member checks its own messages come back in order with its name, and
 * that every other member's arrive in order.
 */
class DemoClient extends Client {
  constructor(id, url, room) {
    super(id, url);
    this.room = room;
    this.name = `n-${id}`;
    this.lastFrom = new Map(); // another member's name -> its last seq seen
  }

  reply(text) {
    const msg = JSON.parse(text);
    if (msg.type === 'error') fail(this, `error: ${text}`);
    if (msg.type !== 'chat') return undefined; // welcome, join, leave
    const [who, seqText] = msg.message.text.split(':');
    if (msg.message.name !== who) fail(this, `a message of ${who} came with the name ${msg.message.name}`);
    if (who === this.name) return msg.message.text;
    const seq = Number(seqText);
    const last = this.lastFrom.get(who) ?? seq - 1; // a later member is first heard mid-sequence
    if (seq !== last + 1) fail(this, `from ${who}: expected ${last + 1}, got ${seq}`);
    this.lastFrom.set(who, seq);
    return undefined;
  }

  start() {
    this.ws.send(JSON.stringify({ type: 'join', name: this.name }));
    this.next();
  }

  next() {
    this.seq++;
    this.due = `${this.name}:${this.seq}`;
    this.ws.send(JSON.stringify({ type: 'chat', text: this.due }));
  }
}

/** Resolves once every client has had a reply since now. */
function progress(what) {
  return withTimeout(Promise.all(clients.map((c) => {
    const since = c.received;
    return new Promise((resolve) => {
      c.onProgress = () => {
        if (c.received > since) resolve();
      };
      c.onProgress();
    });
  })), STEP_MS, () => `every client to get a reply ${what}:\n${failures.join('\n')}\n${tail(log, 30)}`);
}

function assertNoFailures(when) {
  assert.deepEqual(failures, [], `${when}: clients saw ${failures.length} problems:\n${failures.join('\n')}\n${tail(log, 40)}`);
}

function metric(text, name) {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  assert.ok(m, `no ${name} in the metrics:\n${text}`);
  return m[1];
}

after(() => {
  for (const c of clients) {
    c.stop();
    c.closing = true;
    c.ws.terminate();
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test(`clients stay connected through an upgrade from ${process.env.OLD_REV ?? 'the previous commit'}'s partyd to this build's`,
  { timeout: 10 * STEP_MS }, async () => {
    install(envPath('OLD_PARTYD'), exe);
    const args = ['--port', '0', '--host', '127.0.0.1', '--data', path.join(dir, 'data'), '--threads', '2',
      '--durability', 'normal', '--log-level', 'info'];
    const proc = spawn(exe, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const oldPid = proc.pid;
    pids.add(oldPid);
    const oldExited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.stderr.setEncoding('utf8');
    // Every process of the service writes here: the new one inherits the pipe.
    const allExited = new Promise((resolve) => proc.stderr.once('end', resolve));
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      for (const w of [...logWaiters]) w();
    });
    const port = Number((await waitLog(/listening on http:\/\/127\.0\.0\.1:(\d+)/))[1]);
    const oldIno = fs.statSync(`/proc/${oldPid}/exe`).ino;

    const base = `ws://127.0.0.1:${port}/parties`;
    const run = process.pid.toString(36);
    for (let i = 0; i < ECHO; i++) clients.push(new EchoClient(`e${i}`, `${base}/echo/e${i % 5}?_pk=e${i}`));
    for (let i = 0; i < COUNTERS; i++) {
      clients.push(new CounterClient(`c${i}`, `${base}/counter/c${i}-${run}?_pk=c${i}`, `c${i}-${run}`));
    }
    for (let i = 0; i < 2 * DEMO_ROOMS; i++) {
      const room = `d${i % DEMO_ROOMS}-${run}`;
      clients.push(new DemoClient(`d${i}`, `${base}/demo/${room}?_pk=d${i}`, room));
    }
    await withTimeout(Promise.all(clients.map((c) => c.opened)), STEP_MS, 'clients to connect');
    for (const c of clients) c.start();
    await progress('from the old partyd');
    await progress('from the old partyd');
    assertNoFailures('before the upgrade');

    // This build's binary at the path the old one was started from, then
    // the signal: the upgrade runs the file now at that path.
    install(envPath('PARTYD'), exe);
    const newIno = fs.statSync(exe).ino;
    assert.notEqual(newIno, oldIno);
    process.kill(oldPid, 'SIGUSR2');
    const m = await waitLog(/adopted (\d+) connections in [\d.]+ ms; serving \(pid (\d+)\)|upgrade failed: [^\n]*/);
    assert.ok(m[1] !== undefined, `the upgrade to this build's partyd failed: ${m[0]}\n${tail(log, 30)}`);
    const newPid = Number(m[2]);
    pids.add(newPid);
    assert.notEqual(newPid, oldPid);
    assert.ok(Number(m[1]) >= clients.length, `adopted ${m[1]} connections, fewer than the ${clients.length} clients`);
    assert.deepEqual(await withTimeout(oldExited, STEP_MS, () => `the old partyd to exit:\n${tail(log)}`),
      { code: 0, signal: null }, tail(log));
    assert.doesNotMatch(log, /upgrade failed/);

    // Traffic flows through the new process, which runs the new file.
    await progress('from the new partyd');
    await progress('from the new partyd');
    assertNoFailures('after the upgrade');
    assert.equal(fs.statSync(`/proc/${newPid}/exe`).ino, newIno, 'the new process runs this build\'s partyd');
    const metrics = (await httpRequest(port, 'GET', '/_partyd/metrics')).body;
    assert.equal(metric(metrics, 'partyd_runtime_process_id'), String(newPid));
    assert.equal(metric(metrics, 'partyd_runtime_upgrades_total'), '1');
    assert.equal(metric(metrics, 'partyd_runtime_upgrade_failures_total'), '0');
    assert.match(metrics, /^partyd_runtime_build_info\{version="[^"]+"\} 1$/m);

    // Traffic stops; everything sent arrived, once and in order.
    for (const c of clients) c.stop();
    await withTimeout(Promise.all(clients.map((c) => c.drained())), STEP_MS,
      () => `traffic to drain:\n${failures.join('\n')}`);
    assertNoFailures('after the traffic');
    // Counters kept their values across the hand-over: each room's count
    // is the number of its client's increments.
    for (const c of clients.filter((x) => x instanceof CounterClient)) {
      assert.equal((await getJson(port, `/parties/counter/${c.room}`)).count, c.seq, `counter ${c.room}`);
    }
    // The demo rooms stored every message, in order (the last 50 are kept).
    for (let r = 0; r < DEMO_ROOMS; r++) {
      const room = `d${r}-${run}`;
      const history = (await getJson(port, `/parties/demo/${room}`)).history.map((h) => h.text);
      for (const c of clients.filter((x) => x instanceof DemoClient && x.room === room)) {
        const mine = history.filter((t) => t.startsWith(`${c.name}:`)).map((t) => Number(t.split(':')[1]));
        assert.ok(mine.length > 0, `${room}: no message of ${c.name} in the history`);
        const first = mine[0];
        assert.deepEqual(mine, mine.map((_, k) => first + k), `${room}: ${c.name}'s messages in the history`);
        assert.equal(mine[mine.length - 1], c.seq, `${room}: ${c.name}'s last message`);
      }
    }
    const sent = clients.reduce((n, c) => n + c.seq, 0);
    assert.ok(sent > 4 * clients.length, `only ${sent} messages were sent`);

    for (const c of clients) c.closing = true;
    await Promise.all(clients.map((c) => new Promise((resolve) => {
      c.ws.once('close', resolve);
      c.ws.close();
    })));
    process.kill(newPid, 'SIGTERM');
    // The pipe ends once no process of the service holds it: a sanitizer
    // report of the new process is in the log by then.
    await withTimeout(allExited, STEP_MS, () => `partyd to exit:\n${tail(log)}`);
    assert.doesNotMatch(log, /AddressSanitizer|LeakSanitizer|runtime error/);
  });
