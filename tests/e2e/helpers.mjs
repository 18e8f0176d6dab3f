// Shared helpers of the end-to-end tests: start and stop partyd, wait for
// WebSocket events and messages with timeouts (never sleeps), plain HTTP
// requests, and a look at partyd's TCP sockets through /proc.
//
// Every partyd started here is recorded by pid and killed (SIGKILL, by pid)
// when the test process exits, so a failing test never leaves one behind.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

/** Default time to wait for anything the server should do promptly. */
export const TIMEOUT_MS = 5000;
/** partyd under ASan needs longer to start than to answer. */
const START_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 10000;

const live = new Map(); // pid -> ChildProcess, for the exit handler

function killAllStarted() {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
}
process.on('exit', killAllStarted);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killAllStarted();
    process.exit(128 + os.constants.signals[sig]);
  });
}

function envPath(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run these tests through ctest -L e2e)`);
  return value;
}

/** A room name that no other test (or earlier run) uses. */
export function uniqueRoom(prefix = 'room') {
  return `${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/**
 * Starts partyd on a free port of 127.0.0.1 with the probe and greeter
 * parties loaded, and waits for its "listening on" log line.
 * Returns {port, host, proc, pid, stderr(), exited}. options.dataDir: a
 * data directory to use (one a crashed partyd left, see crashPartyd)
 * instead of a new one.
 */
export async function startPartyd(extraArgs = [], options = {}) {
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-e2e-'));
  const args = [
    '--port', '0',
    '--host', '127.0.0.1',
    '--data', dataDir,
    '--party', 'probe=' + envPath('PROBE_PARTY'),
    '--party', 'greeter=' + envPath('GREETER_PARTY'),
    '--log-level', 'debug',
    ...extraArgs,
  ];
  const proc = spawn(envPath('PARTYD'), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderrText = '';
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      live.delete(proc.pid);
      resolve(exitInfo);
    });
  });
  const spawnError = new Promise((_, reject) => proc.once('error', reject));
  spawnError.catch(() => {}); // observed below
  if (proc.pid !== undefined) live.set(proc.pid, proc);

  const server = {
    proc,
    pid: proc.pid,
    host: '127.0.0.1',
    port: 0,
    dataDir,
    exited,
    stderr: () => stderrText,
    exitInfo: () => exitInfo,
  };

  const listening = new Promise((resolve, reject) => {
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      stderrText += chunk;
      const m = /listening on https?:\/\/127\.0\.0\.1:(\d+)/.exec(stderrText);
      if (m) resolve(Number(m[1]));
    });
    exited.then(({ code, signal }) =>
      reject(new Error(`partyd exited before listening (code ${code}, signal ${signal}):\n${stderrText}`)));
  });
  try {
    server.port = await withTimeout(Promise.race([listening, spawnError]), START_TIMEOUT_MS,
      () => `partyd did not log "listening on http://127.0.0.1:<port>" within ${START_TIMEOUT_MS} ms:\n${stderrText}`);
  } catch (err) {
    await killHard(server);
    throw err;
  }
  return server;
}

async function killHard(server) {
  if (server.exitInfo() === null) {
    try {
      process.kill(server.pid, 'SIGKILL');
    } catch {
      // gone
    }
    await withTimeout(server.exited, STOP_TIMEOUT_MS, 'partyd did not die on SIGKILL').catch(() => {});
  }
  fs.rmSync(server.dataDir, { recursive: true, force: true });
}

/**
 * Kills partyd with SIGKILL (by pid), as a crash would, and waits for it to
 * exit. Its data directory stays, for startPartyd(args, {dataDir}).
 */
export async function crashPartyd(server) {
  if (server.exitInfo() === null) process.kill(server.pid, 'SIGKILL');
  await withTimeout(server.exited, STOP_TIMEOUT_MS, 'partyd did not die on SIGKILL');
}

/**
 * Sends SIGTERM to partyd (by pid) and waits for it to exit. Returns
 * {code, signal}; does not judge them (see stopPartyd).
 */
export async function terminatePartyd(server) {
  if (server.exitInfo() === null) process.kill(server.pid, 'SIGTERM');
  try {
    return await withTimeout(server.exited, STOP_TIMEOUT_MS,
      () => `partyd did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM:\n${tail(server.stderr())}`);
  } catch (err) {
    await killHard(server);
    throw err;
  }
}

/**
 * Stops partyd with SIGTERM and throws unless it exits with status 0
 * (a sanitizer report makes the status non-zero). Safe to call twice.
 */
export async function stopPartyd(server) {
  if (!server) return;
  const { code, signal } = await terminatePartyd(server);
  fs.rmSync(server.dataDir, { recursive: true, force: true });
  if (code !== 0 || signal !== null) {
    throw new Error(`partyd exited with code ${code}, signal ${signal} (expected 0):\n${tail(server.stderr())}`);
  }
}

/** Waits until server's stderr matches re (or fails after ms). */
export function waitStderr(server, re, ms = TIMEOUT_MS) {
  return withTimeout(new Promise((resolve) => {
    const check = () => {
      if (!re.test(server.stderr())) return;
      server.proc.stderr.off('data', check);
      resolve();
    };
    server.proc.stderr.on('data', check); // after startPartyd's own listener: stderr() is current
    check();
  }), ms, () => `partyd's log never matched ${re}:\n${tail(server.stderr())}`);
}

export function tail(text, lines = 60) {
  return text.split('\n').slice(-lines).join('\n');
}

/**
 * Resolves with promise's value, or rejects after ms with message (a string
 * or a function giving one, evaluated at timeout time). Clears its timer.
 */
export function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(typeof message === 'function' ? message() : `timed out after ${ms} ms: ${message}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Waits for one event on an EventEmitter (ws, net.Socket) or an
 * EventTarget (partysocket). Resolves with the emitter's arguments as an
 * array, or with the Event object for an EventTarget. Fails after ms.
 */
export function waitEvent(target, name, ms = TIMEOUT_MS, what = '') {
  let off;
  const p = new Promise((resolve) => {
    if (typeof target.on === 'function' && typeof target.off === 'function') {
      const fn = (...args) => resolve(args);
      target.once(name, fn);
      off = () => target.off(name, fn);
    } else {
      const fn = (ev) => resolve(ev);
      target.addEventListener(name, fn, { once: true });
      off = () => target.removeEventListener(name, fn);
    }
  });
  return withTimeout(p, ms, `waiting for '${name}'${what ? ' ' + what : ''}`).finally(off);
}

/**
 * Records every message and the close of a socket (ws WebSocket or
 * PartySocket) from the moment it is created, so a test can wait for the
 * next one in order and also check what has (not) arrived.
 * Each message is {data, binary}; text data is a string.
 */
export class Inbox {
  constructor(socket, label = 'socket') {
    this.label = label;
    this.messages = [];
    this.read = 0;
    this.closeInfo = null;
    this.waiters = new Set();
    if (typeof socket.on === 'function' && typeof socket.off === 'function') {
      // ws: 'message' (data, isBinary); text arrives as a Buffer too.
      socket.on('message', (data, isBinary) => {
        this.push({ data: isBinary ? data : data.toString('utf8'), binary: isBinary });
      });
      socket.on('close', (code, reason) => this.onClose({ code, reason: reason.toString('utf8') }));
      socket.on('error', () => {}); // surfaced by 'close' and by the waits
    } else {
      socket.addEventListener('message', (ev) => {
        this.push({ data: ev.data, binary: typeof ev.data !== 'string' });
      });
      socket.addEventListener('close', (ev) => this.onClose({ code: ev.code, reason: ev.reason }));
    }
  }

  push(msg) {
    this.messages.push(msg);
    this.wake();
  }

  onClose(info) {
    if (this.closeInfo === null) this.closeInfo = info;
    this.wake();
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  /** Messages received and not yet taken by next(). */
  unread() {
    return this.messages.slice(this.read);
  }

  describe() {
    const shown = this.messages.map((m) => (m.binary ? `<binary ${m.data.byteLength ?? m.data.length} bytes>` : JSON.stringify(m.data)));
    return `${this.label} received [${shown.join(', ')}]${this.closeInfo ? `, closed ${JSON.stringify(this.closeInfo)}` : ''}`;
  }

  /** Waits until cond() is truthy (checked on every message/close). */
  until(cond, ms, what) {
    let waiter;
    const p = new Promise((resolve) => {
      waiter = () => {
        const v = cond();
        if (v) resolve(v);
      };
      this.waiters.add(waiter);
      waiter();
    });
    return withTimeout(p, ms, () => `${this.label}: timed out after ${ms} ms ${what}; ${this.describe()}`)
      .finally(() => this.waiters.delete(waiter));
  }

  /** The next unread message. */
  async next(ms = TIMEOUT_MS) {
    await this.until(() => this.read < this.messages.length || this.closeInfo, ms, 'waiting for a message');
    if (this.read < this.messages.length) return this.messages[this.read++];
    throw new Error(`${this.label}: closed while waiting for a message; ${this.describe()}`);
  }

  /** The next unread text message (fails on binary). */
  async nextText(ms = TIMEOUT_MS) {
    const m = await this.next(ms);
    if (m.binary) throw new Error(`${this.label}: expected a text message, got binary; ${this.describe()}`);
    return m.data;
  }

  /** Waits for the close and returns {code, reason}. */
  async closed(ms = TIMEOUT_MS) {
    await this.until(() => this.closeInfo, ms, 'waiting for close');
    return this.closeInfo;
  }
}

/**
 * A plain HTTP request on a fresh connection (no keep-alive pool, so no
 * idle client socket lingers). Returns {status, headers, body (string)}.
 */
export function httpRequest(port, method, urlPath, body, ms = TIMEOUT_MS) {
  const p = new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method, path: urlPath, agent: false,
      headers: body !== undefined ? { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) } : {},
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
  return withTimeout(p, ms, `${method} ${urlPath}`);
}

/** GET urlPath and parse it as JSON (fails on a non-200 status). */
export async function getJson(port, urlPath) {
  const res = await httpRequest(port, 'GET', urlPath);
  if (res.status !== 200) throw new Error(`GET ${urlPath}: status ${res.status}: ${res.body}`);
  try {
    return JSON.parse(res.body);
  } catch (err) {
    throw new Error(`GET ${urlPath}: not JSON (${err.message}): ${JSON.stringify(res.body)}`);
  }
}

// ---- partyd's TCP sockets, from /proc -------------------------------------

export const TCP_STATES = {
  '01': 'ESTABLISHED', '02': 'SYN_SENT', '03': 'SYN_RECV', '04': 'FIN_WAIT1', '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING',
};

function parseHexAddr(hex) {
  const [ip, port] = hex.split(':');
  let addr = ip;
  if (ip.length === 8) {
    // IPv4, stored as a little-endian 32-bit word.
    addr = [3, 2, 1, 0].map((i) => parseInt(ip.slice(i * 2, i * 2 + 2), 16)).join('.');
  }
  return { addr, port: parseInt(port, 16) };
}

/**
 * The TCP sockets that process pid holds open (by fd), from
 * /proc/<pid>/net/tcp{,6} joined with the socket inodes of /proc/<pid>/fd.
 * Each: {local, localPort, remote, remotePort, state, inode}.
 */
export function processTcpSockets(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let link;
    try {
      link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]);
  }
  const out = [];
  for (const table of ['tcp', 'tcp6']) {
    let text;
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const inode = f[9];
      if (!inodes.has(inode)) continue;
      const local = parseHexAddr(f[1]);
      const remote = parseHexAddr(f[2]);
      out.push({
        local: local.addr, localPort: local.port, remote: remote.addr, remotePort: remote.port,
        state: TCP_STATES[f[3].toUpperCase()] ?? f[3], inode,
      });
    }
  }
  return out;
}

function fmtSockets(list) {
  return list.map((s) => `${s.local}:${s.localPort} <- ${s.remote}:${s.remotePort} ${s.state}`).join('; ') || 'none';
}

/** partyd's socket for the client connection whose local port is clientPort. */
export function serverSideOf(pid, clientPort) {
  return processTcpSockets(pid).find((s) => s.remotePort === clientPort);
}

/**
 * Polls (every 50 ms, up to ms) until partyd holds no socket in CLOSE_WAIT
 * and no longer holds the server side of the connection from clientPort.
 * Throws with the sockets it still holds otherwise.
 */
export async function waitServerReleased(pid, clientPort, ms = 3000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const all = processTcpSockets(pid);
    const closeWait = all.filter((s) => s.state === 'CLOSE_WAIT');
    const ours = all.filter((s) => s.remotePort === clientPort);
    if (closeWait.length === 0 && ours.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(`after ${ms} ms partyd (pid ${pid}) still holds: CLOSE_WAIT sockets: ${fmtSockets(closeWait)}; ` +
        `the connection from client port ${clientPort}: ${fmtSockets(ours)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // poll interval, not a wait for a condition
  }
}
