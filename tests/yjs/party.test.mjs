// The yjs party with real clients from npm: y-partyserver's YProvider and
// stock y-websocket, both with the `ws` package as their WebSocket. partyd
// runs with --hibernate-after 1, so rooms hibernate between bursts and the
// wake-up path is part of every test. Everything waits on events with
// timeouts; the one long wait is the idle test, whose point is 40 s of
// silence.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WS from 'ws';
import * as Y from 'yjs';
import YProvider from 'y-partyserver/provider';
import { WebsocketProvider } from 'y-websocket';
import { startPartyd, stopPartyd, uniqueRoom, withTimeout } from '../e2e/helpers.mjs';

const TIMEOUT_MS = 10000;
const servers = new Set();
const providers = new Set();
const tmpDirs = new Set();

after(async () => {
  for (const p of providers) {
    p.destroy();
    // The awareness timer would keep node alive.
    p.awareness.destroy();
  }
  // A partyd that does not exit 0 (a leak or error found by the
  // sanitizers at exit) fails the file, after everything is cleaned up.
  const errors = [];
  for (const s of servers) await stopPartyd(s).catch((err) => errors.push(err));
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  if (errors.length > 0) throw errors[0];
});

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

async function serve(args = []) {
  const s = await startPartyd(['--hibernate-after', '1', ...args]);
  servers.add(s);
  return s;
}

function yprovider(server, room, extra = {}) {
  const doc = new Y.Doc();
  const p = new YProvider(`127.0.0.1:${server.port}`, room, doc, {
    party: 'yjs', WebSocketPolyfill: WS, disableBc: true, ...extra,
  });
  providers.add(p);
  return { doc, p };
}

function ywebsocket(server, room, extra = {}) {
  const doc = new Y.Doc();
  const p = new WebsocketProvider(`ws://127.0.0.1:${server.port}/parties/yjs`, room, doc, {
    WebSocketPolyfill: WS, disableBc: true, ...extra,
  });
  providers.add(p);
  return { doc, p };
}

function synced(c, what = '') {
  if (c.p.synced) return Promise.resolve();
  return withTimeout(new Promise((resolve) => {
    const on = (s) => {
      if (s) {
        c.p.off('sync', on);
        resolve();
      }
    };
    c.p.on('sync', on);
  }), TIMEOUT_MS, `sync ${what}`);
}

function content(doc) {
  return JSON.stringify({
    text: doc.getText('text').toString(),
    map: Object.fromEntries(Object.entries(doc.getMap('map').toJSON()).sort()),
    array: doc.getArray('array').toJSON(),
    xml: doc.getXmlFragment('xml').toString(),
  });
}

/** Waits until cond() holds, checked on every update of the docs. */
function until(docs, cond, what, ms = TIMEOUT_MS) {
  let check;
  return withTimeout(new Promise((resolve) => {
    check = () => {
      if (cond()) resolve();
    };
    for (const d of docs) d.on('update', check);
    check();
  }), ms, () => `${what}; docs: ${docs.map(content).join(' | ')}`).finally(() => {
    for (const d of docs) d.off('update', check);
  });
}

function edit(doc, who) {
  doc.transact(() => {
    doc.getText('text').insert(0, `${who}😀 `);
    doc.getMap('map').set(who, { n: 1, s: `é${who}` });
    doc.getArray('array').push([who]);
    const el = new Y.XmlElement('p');
    el.setAttribute('by', who);
    el.insert(0, [new Y.XmlText(`${who} 𝄞`)]);
    doc.getXmlFragment('xml').push([el]);
  });
}

function hasAll(doc, whos) {
  const c = content(doc);
  return whos.every((w) => c.includes(`${w}😀`) && c.includes(`é${w}`) && c.includes(`${w} 𝄞`));
}

test('YProvider and y-websocket clients edit concurrently and converge', async () => {
  const server = await serve();
  const room = uniqueRoom('doc');
  const a = yprovider(server, room);
  const b = ywebsocket(server, room);
  await Promise.all([synced(a, 'YProvider'), synced(b, 'y-websocket')]);
  for (let i = 0; i < 5; i++) {
    edit(a.doc, `a${i}`);
    edit(b.doc, `b${i}`);
  }
  const whos = [0, 1, 2, 3, 4].flatMap((i) => [`a${i}`, `b${i}`]);
  await until([a.doc, b.doc], () => hasAll(a.doc, whos) && content(a.doc) === content(b.doc), 'convergence');
  assert.equal(a.doc.getArray('array').length, 10);
  assert.equal(b.doc.getXmlFragment('xml').length, 10);

  // A client that comes later gets the whole document.
  const c = ywebsocket(server, room);
  await synced(c, 'late client');
  await until([c.doc], () => content(c.doc) === content(a.doc), 'late client has everything');
});

test('awareness reaches everyone and is removed when a client leaves', async () => {
  const server = await serve();
  const room = uniqueRoom('aware');
  const a = yprovider(server, room);
  const b = ywebsocket(server, room);
  await Promise.all([synced(a), synced(b)]);
  a.p.awareness.setLocalStateField('user', { name: 'alice' });
  b.p.awareness.setLocalStateField('user', { name: 'bob' });
  const seen = (p, client, name) => p.awareness.getStates().get(client)?.user?.name === name;
  const awareness = (p, cond, what) => withTimeout(new Promise((resolve) => {
    const check = () => {
      if (cond()) {
        p.awareness.off('change', check);
        resolve();
      }
    };
    p.awareness.on('change', check);
    check();
  }), TIMEOUT_MS, what);
  await awareness(b.p, () => seen(b.p, a.doc.clientID, 'alice'), 'bob sees alice');
  await awareness(a.p, () => seen(a.p, b.doc.clientID, 'bob'), 'alice sees bob');

  // A newcomer gets the current states on connect.
  const c = yprovider(server, room);
  await awareness(c.p, () => seen(c.p, a.doc.clientID, 'alice') && seen(c.p, b.doc.clientID, 'bob'), 'newcomer sees both');

  // alice's connection drops: the server says her state is gone.
  a.p.ws.terminate();
  a.p.shouldConnect = false;
  await awareness(b.p, () => !b.p.awareness.getStates().has(a.doc.clientID), 'bob sees alice leave');
});

test('custom __YPS: messages go to the other connections', async () => {
  const server = await serve();
  const room = uniqueRoom('custom');
  const a = yprovider(server, room);
  const b = yprovider(server, room);
  await Promise.all([synced(a), synced(b)]);
  const got = withTimeout(new Promise((resolve) => b.p.on('custom-message', resolve)), TIMEOUT_MS, 'custom message');
  const echoed = [];
  a.p.on('custom-message', (m) => echoed.push(m));
  a.p.sendMessage(JSON.stringify({ hello: 'wörld 😀' }));
  assert.deepEqual(JSON.parse(await got), { hello: 'wörld 😀' });
  // The sender is not sent its own message: a round trip through b proves
  // a had time to receive one.
  const back = withTimeout(new Promise((resolve) => a.p.on('custom-message', resolve)), TIMEOUT_MS, 'reply');
  b.p.sendMessage('"pong"');
  assert.equal(await back, '"pong"');
  assert.deepEqual(echoed, ['"pong"']);
});

test('read-only connections sync but do not write', async () => {
  const server = await serve();
  const room = uniqueRoom('ro');
  const w = ywebsocket(server, room);
  await synced(w);
  edit(w.doc, 'writer');
  const ro = yprovider(server, room, { params: { readonly: '1' } });
  await synced(ro);
  await until([ro.doc], () => hasAll(ro.doc, ['writer']), 'read-only client gets the document');
  edit(ro.doc, 'reader');
  // The writer's next edit arrives; the reader's never does.
  edit(w.doc, 'writer2');
  await until([ro.doc], () => hasAll(ro.doc, ['writer2']), 'read-only client gets later edits');
  const fresh = ywebsocket(server, room);
  await synced(fresh);
  await until([fresh.doc], () => hasAll(fresh.doc, ['writer', 'writer2']), 'new client has the writes');
  assert.ok(!hasAll(fresh.doc, ['reader']), 'the read-only edit was not stored');
  assert.ok(!hasAll(w.doc, ['reader']), 'the read-only edit was not relayed');
});

test('after kill -9 and a restart, clients re-sync and a new client gets everything', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-yjs-'));
  tmpDirs.add(dataDir);
  const port = await freePort();
  const args = ['--data', dataDir, '--port', String(port), '--durability', 'normal'];
  let server = await serve(args);
  const room = uniqueRoom('crash');
  const a = yprovider(server, room, { maxBackoffTime: 200 });
  const b = ywebsocket(server, room, { maxBackoffTime: 200 });
  await Promise.all([synced(a), synced(b)]);
  edit(a.doc, 'before-a');
  edit(b.doc, 'before-b');
  await until([a.doc, b.doc], () => hasAll(a.doc, ['before-a', 'before-b']) && hasAll(b.doc, ['before-a', 'before-b']), 'first edits relayed');

  process.kill(server.pid, 'SIGKILL');
  await server.exited;
  servers.delete(server);
  fs.rmSync(server.dataDir, { recursive: true, force: true }); // the helper's own, unused
  // Offline edits on both sides, then the server comes back on the same port.
  edit(a.doc, 'offline-a');
  edit(b.doc, 'offline-b');
  server = await serve(args);
  const all = ['before-a', 'before-b', 'offline-a', 'offline-b'];
  await until([a.doc, b.doc], () => hasAll(a.doc, all) && hasAll(b.doc, all), 'clients re-synced after the restart', 20000);

  const c = yprovider(server, room);
  await synced(c);
  await until([c.doc], () => hasAll(c.doc, all) && content(c.doc) === content(a.doc), 'a new client gets the whole document');
});

test('the log is compacted past the row threshold and the document survives', async () => {
  process.env.PARTYD_YJS_COMPACT_ROWS = '5';
  let server;
  try {
    server = await serve();
  } finally {
    delete process.env.PARTYD_YJS_COMPACT_ROWS;
  }
  const room = uniqueRoom('compact');
  const a = ywebsocket(server, room);
  await synced(a);
  for (let i = 0; i < 30; i++) a.doc.getText('text').insert(0, `${i},`);
  const b = ywebsocket(server, room);
  await synced(b);
  await until([b.doc], () => b.doc.getText('text').toString() === a.doc.getText('text').toString(), 'compacted document synced');
  assert.ok(a.doc.getText('text').toString().startsWith('29,28,'));
});

test('an idle y-websocket client is not dropped after 40 s', { timeout: 90000 }, async () => {
  const server = await serve();
  const room = uniqueRoom('idle');
  const a = ywebsocket(server, room);
  await synced(a);
  const closes = [];
  a.p.on('connection-close', (ev) => closes.push(ev?.code));
  const ws = a.p.ws;
  // Nothing happens for 40 s but heartbeats: the point of this test is the
  // passing time, so it waits for it.
  await new Promise((resolve) => setTimeout(resolve, 40000));
  assert.deepEqual(closes, [], 'the connection was never closed');
  assert.equal(a.p.ws, ws, 'still the first WebSocket');
  const b = yprovider(server, room);
  await synced(b);
  edit(b.doc, 'wake');
  await until([a.doc], () => hasAll(a.doc, ['wake']), 'the idle client still receives edits');
});
