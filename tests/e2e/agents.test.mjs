// Cloudflare's AgentClient (npm agents 0.32.0, unchanged) against partyd's
// built-in todos party: the identity frame carries the room's name, the
// state goes from one client to the others and a malformed one is refused
// with an error, a readonly connection is refused state and writes, RPC
// answers with results, errors (unknown methods too) and streamed chunks,
// and the state is still there after the room hibernated, after it was
// evicted, and after partyd was killed with SIGKILL and started again on
// the same data directory; a call still open when partyd stops is answered
// with an error. Every wait is on an event, bounded by a timeout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentClient } from 'agents/client';
import WS from 'ws';
import {
  crashPartyd, getJson, startPartyd, stopPartyd, terminatePartyd, uniqueRoom, waitStderr, withTimeout,
  TIMEOUT_MS,
} from './helpers.mjs';

// Rooms hibernate and leave memory quickly, so the tests can wait for both.
const ARGS = ['--hibernate-after', '0.3', '--idle-timeout', '0.3'];

let server;
const clients = new Set();

before(async () => {
  server = await startPartyd(ARGS);
});

after(async () => {
  for (const c of clients) c.client.close();
  await stopPartyd(server);
});

/** How many of partyd's log lines so far contain text. */
function count(text) {
  return server.stderr().split('\n').filter((line) => line.includes(text)).length;
}

/** Waits until n of partyd's log lines contain text. */
function waitLogged(text, n) {
  return waitStderr(server, { test: () => count(text) >= n, toString: () => `${n} × "${text}"` });
}

/**
 * An AgentClient for the todos room, recording what it is told: states
 * (with their source), state errors, identities. next(kind) waits for the
 * next record of that kind not yet taken.
 */
function agent(room, options = {}) {
  const seen = { state: [], stateError: [], identity: [] };
  const taken = { state: 0, stateError: 0, identity: 0 };
  const waiters = new Set();
  const push = (kind, value) => {
    seen[kind].push(value);
    for (const w of [...waiters]) w();
  };
  const client = new AgentClient({
    agent: 'todos',
    name: room,
    host: `127.0.0.1:${server.port}`,
    WebSocket: WS,
    maxRetries: 0,
    onStateUpdate: (state, source) => push('state', { state, source }),
    onStateUpdateError: (error) => push('stateError', error),
    onIdentity: (name, agentName) => push('identity', { name, agent: agentName }),
    ...options,
  });
  const handle = {
    client,
    seen,
    next(kind, what = kind) {
      let waiter;
      const p = new Promise((resolve) => {
        waiter = () => {
          if (taken[kind] < seen[kind].length) resolve(seen[kind][taken[kind]++]);
        };
        waiters.add(waiter);
        waiter();
      });
      return withTimeout(p, TIMEOUT_MS, () => `${room}: no ${what}; seen ${JSON.stringify(seen)}`)
        .finally(() => waiters.delete(waiter));
    },
    /** The next state sent by the server (skipping the client's own echoes). */
    async nextServerState() {
      for (;;) {
        const s = await handle.next('state', 'state from the server');
        if (s.source === 'server') return s.state;
      }
    },
    close() {
      clients.delete(handle);
      client.close();
    },
  };
  clients.add(handle);
  return handle;
}

test('identity carries the room name, and the stored state follows it', async () => {
  const room = uniqueRoom('ident');
  const a = agent(room);
  await withTimeout(a.client.ready, TIMEOUT_MS, 'ready');
  assert.deepEqual(await a.next('identity'), { name: room, agent: 'todos' });
  assert.equal(a.client.name, room);
  assert.equal(a.client.agent, 'todos');
  // The first start stored an empty list; ready resolved after it arrived.
  assert.deepEqual(a.client.state, { items: [] });
  assert.deepEqual(await a.nextServerState(), { items: [] });
  a.close();
});

test('a state set by one client reaches the other, not back to the sender', async () => {
  const room = uniqueRoom('share');
  const a = agent(room);
  // The same room through the other prefix.
  const b = agent(room, { prefix: 'parties' });
  await Promise.all([a.client.ready, b.client.ready].map((p) => withTimeout(p, TIMEOUT_MS, 'ready')));
  await a.nextServerState();
  await b.nextServerState();

  const list = { items: [{ id: 'x1', text: 'milk', done: false }] };
  a.client.setState(list);
  assert.deepEqual(await b.nextServerState(), list);
  assert.deepEqual(b.client.state, list);
  // b answers with a change; a gets it, and had no echo of its own before.
  const next = { items: [{ id: 'x1', text: 'milk', done: true }] };
  b.client.setState(next);
  assert.deepEqual(await a.nextServerState(), next);
  assert.deepEqual(a.seen.state.map((s) => s.source), ['server', 'client', 'server']);
  assert.equal(await a.client.call('count', []), 1);
  assert.deepEqual(await getJson(server.port, `/agents/todos/${room}`), next);
  a.close();
  b.close();
});

test('a state not of the list\'s shape is refused with an error and changes nothing', async () => {
  const room = uniqueRoom('reject');
  const a = agent(room);
  await withTimeout(a.client.ready, TIMEOUT_MS, 'ready');
  a.client.setState({ items: [{ id: 7, text: 'no' }] });
  assert.equal(await a.next('stateError'),
    'each item must be {"id": string, "text": string, "done": boolean}');
  a.client.setState({ list: [] });
  assert.equal(await a.next('stateError'), 'state must be {"items": [...]}');
  assert.equal(await a.client.call('count', []), 0);
  assert.deepEqual(await getJson(server.port, `/parties/todos/${room}`), { items: [] });
  a.close();
});

test('a readonly connection is refused state changes and writing calls', async () => {
  const room = uniqueRoom('ro');
  const ro = agent(room, { query: { readonly: '1' } });
  const rw = agent(room);
  await Promise.all([ro.client.ready, rw.client.ready].map((p) => withTimeout(p, TIMEOUT_MS, 'ready')));
  ro.client.setState({ items: [] });
  assert.equal(await ro.next('stateError'), 'Connection is readonly');
  await assert.rejects(ro.client.call('add', ['tea']), { message: 'Connection is readonly' });
  // Reading calls are allowed, and the list it sees follows the writer's.
  const id = await rw.client.call('add', ['tea']);
  assert.deepEqual(await ro.nextServerState(), { items: [] }); // on connect
  assert.deepEqual(await ro.nextServerState(), { items: [{ id, text: 'tea', done: false }] });
  assert.equal(await ro.client.call('count', []), 1);
  ro.close();
  rw.close();
});

test('RPC: results, errors, unknown methods and a streamed export', async () => {
  const room = uniqueRoom('rpc');
  const a = agent(room);
  await withTimeout(a.client.ready, TIMEOUT_MS, 'ready');
  const milk = await a.client.call('add', ['milk']);
  const eggs = await a.client.call('add', ['eggs']);
  assert.match(milk, /^[0-9a-f]{16}$/);
  assert.notEqual(milk, eggs);
  assert.equal(await a.client.call('toggle', [eggs]), true);
  assert.equal(await a.client.call('count', []), 2);
  await assert.rejects(a.client.call('toggle', ['nope']), { message: 'no item has this id' });
  await assert.rejects(a.client.call('add', [42]),
    { message: 'add(text): text must be a string of at most 1000 bytes' });
  await assert.rejects(a.client.call('launch', []), { message: 'Method launch does not exist' });
  assert.equal(await a.client.stub.remove(milk), true);

  const chunks = [];
  let done;
  const result = await a.client.call('add', ['bread']).then((bread) => a.client.call('export', [], {
    stream: { onChunk: (c) => chunks.push(c), onDone: (r) => { done = r; } },
  }).then((r) => ({ r, bread })));
  assert.equal(result.r, 2);
  assert.equal(done, 2);
  assert.deepEqual(chunks, [
    { id: eggs, text: 'eggs', done: true },
    { id: result.bread, text: 'bread', done: false },
  ]);
  a.close();
});

test('the state survives hibernation and eviction', async () => {
  const room = uniqueRoom('sleep');
  const a = agent(room);
  await withTimeout(a.client.ready, TIMEOUT_MS, 'ready');
  const id = await a.client.call('add', ['nap']);
  // A hibernation logged after the call (one log stream, in order).
  await waitStderr(server, new RegExp(`room todos/${room}: call add from [\\s\\S]*` +
    `room todos/${room}: hibernated with 1 connections`));
  // The call wakes the room, which reads its list back.
  assert.equal(await a.client.call('toggle', [id]), true);
  a.close();
  await waitLogged(`room todos/${room}: evicted`, 1);
  const b = agent(room);
  await withTimeout(b.client.ready, TIMEOUT_MS, 'ready');
  assert.deepEqual(b.client.state, { items: [{ id, text: 'nap', done: true }] });
  b.close();
});

test('the state survives kill -9 and a restart on the same data directory', async () => {
  const room = uniqueRoom('crash');
  const a = agent(room);
  await withTimeout(a.client.ready, TIMEOUT_MS, 'ready');
  // Answered: committed (the answer waits for the commit).
  const id = await a.client.call('add', ['survive']);
  a.close();
  await crashPartyd(server);
  server = await startPartyd(ARGS, { dataDir: server.dataDir });
  const b = agent(room);
  await withTimeout(b.client.ready, TIMEOUT_MS, 'ready');
  assert.deepEqual(b.client.state, { items: [{ id, text: 'survive', done: false }] });
  assert.equal(await b.client.call('count', []), 1);
  b.close();
});

test('a call still open when partyd stops gets an error, not a silent close', async () => {
  // The probe party with RPC methods: "hang" leaves its call open.
  process.env.PARTYD_PROBE_RPC = '1';
  let probe;
  try {
    probe = await startPartyd([]);
  } finally {
    delete process.env.PARTYD_PROBE_RPC;
  }
  const client = new AgentClient({
    agent: 'probe', name: uniqueRoom('stop'), host: `127.0.0.1:${probe.port}`, WebSocket: WS, maxRetries: 0,
  });
  try {
    await withTimeout(client.ready, TIMEOUT_MS, 'ready');
    const hung = client.call('hang', []);
    hung.catch(() => {}); // judged below
    // Calls on one connection run in order: once "ok" is answered, "hang" is open.
    assert.equal(await client.call('ok', []), true);
    const { code } = await terminatePartyd(probe);
    assert.equal(code, 0);
    await assert.rejects(withTimeout(hung, TIMEOUT_MS, 'the open call'),
      { message: 'partyd is restarting; the call was not finished' });
  } finally {
    client.close();
    await stopPartyd(probe);
  }
});
