// Hibernation with real partysocket clients: partyd runs with
// --hibernate-after 1 and the probe party made hibernating
// (PARTYD_PROBE_HIBERNATE=1). Two clients stay idle until partyd logs that
// the room hibernated with both connections open; a message then wakes the
// room (on_start runs again) and is answered, and the room still knows both
// connections.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import WS from 'ws';
import { Inbox, getJson, startPartyd, stopPartyd, uniqueRoom, waitEvent, withTimeout } from './helpers.mjs';

let server;
const sockets = new Set();

before(async () => {
  process.env.PARTYD_PROBE_HIBERNATE = '1';
  try {
    server = await startPartyd(['--hibernate-after', '1']);
  } finally {
    delete process.env.PARTYD_PROBE_HIBERNATE;
  }
});

after(async () => {
  for (const s of sockets) s.close();
  await stopPartyd(server);
});

function client(room, id) {
  const ps = new PartySocket({
    host: `127.0.0.1:${server.port}`, party: 'probe', room, id, WebSocket: WS, maxRetries: 0,
  });
  sockets.add(ps);
  return { ps, inbox: new Inbox(ps, id) };
}

/** Resolves once partyd's log contains text (checked whenever it grows). */
function logged(text, ms) {
  let onData;
  return withTimeout(new Promise((resolve) => {
    onData = () => {
      if (server.stderr().includes(text)) resolve();
    };
    server.proc.stderr.on('data', onData);
    onData();
  }), ms, `partyd to log "${text}"`).finally(() => server.proc.stderr.off('data', onData));
}

test('idle partysocket clients keep their room hibernated until a message wakes it', async () => {
  const room = uniqueRoom('sleepy');
  const a = client(room, 'alice');
  const b = client(room, 'bob');
  await Promise.all([waitEvent(a.ps, 'open'), waitEvent(b.ps, 'open')]);
  assert.match(await a.inbox.nextText(), /^hello:alice:/);
  assert.match(await b.inbox.nextText(), /^hello:bob:/);

  // Both stay idle; the room leaves memory with its two connections open.
  await logged(`room probe/${room}: hibernated with 2 connections`, 8000);

  a.ps.send('good morning');
  assert.equal(await a.inbox.nextText(), 'echo:good morning');
  b.ps.send(`whois:alice`);
  assert.equal(await b.inbox.nextText(), 'whois:alice:1');

  const record = await getJson(server.port, `/parties/probe/${room}`);
  assert.equal(record.attempts, 2, 'on_start ran once at first and once on the wake-up');
  assert.equal(record.connections, 2);
  assert.equal(record.name, room);
});
