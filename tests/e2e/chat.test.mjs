// The built-in chat party with real partysocket clients: a message reaches
// every other connection of the room and never its sender; binary stays
// binary; GET on the room counts its open connections.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import WS from 'ws';
import { Inbox, getJson, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

let server;
const sockets = new Set();

before(async () => {
  server = await startPartyd();
});

after(async () => {
  for (const s of sockets) s.close();
  await stopPartyd(server);
});

/** Opens n partysocket clients to /parties/chat/<room> and waits for all. */
async function join(room, n) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const ps = new PartySocket({
      host: `127.0.0.1:${server.port}`,
      party: 'chat',
      room,
      WebSocket: WS,
      maxRetries: 0, // a reconnection would hide a dropped connection
    });
    ps.binaryType = 'arraybuffer';
    sockets.add(ps);
    clients.push({ ps, inbox: new Inbox(ps, `client ${String.fromCharCode(97 + i)}`), opened: waitEvent(ps, 'open') });
  }
  await Promise.all(clients.map((c) => c.opened));
  // Connected as far as the room is concerned, not only on the client side.
  assert.deepEqual(await getJson(server.port, `/parties/chat/${room}`), { room, connections: n });
  return clients;
}

describe('chat party', () => {
  it('delivers a message to every other connection and not back to its sender', async () => {
    const room = uniqueRoom('chat-fanout');
    const [a, b, c] = await join(room, 3);

    const clients = { a, b, c };
    // Each round, one client sends and the two others must receive it as
    // their very next message. The room runs one event at a time and each
    // connection's stream is ordered, so had a sender got its own message
    // back, it would arrive before the next round's message, which is what
    // the sender of round n receives in round n+1: the negative is proven
    // without waiting for something not to happen.
    const rounds = ['a', 'b', 'c', 'a'];
    for (let i = 0; i < rounds.length; i++) {
      const from = rounds[i];
      const text = `round ${i} from ${from}`;
      clients[from].ps.send(text);
      for (const to of Object.keys(clients).filter((k) => k !== from)) {
        const got = await clients[to].inbox.next();
        const why = i > 0 && to === rounds[i - 1] ? `${to} received its own message of round ${i - 1}?` : `${to} did not get ${text}`;
        assert.deepEqual(got, { data: text, binary: false }, `${why} ${clients[to].inbox.describe()}`);
      }
    }
  });

  it('keeps binary messages binary, even bytes that are valid UTF-8', async () => {
    const room = uniqueRoom('chat-binary');
    const [a, b] = await join(room, 2);
    // A raw ws client too: it reports isBinary from the frame opcode.
    const raw = new WS(`ws://127.0.0.1:${server.port}/parties/chat/${room}`);
    sockets.add(raw);
    const rawInbox = new Inbox(raw, 'ws client');
    await waitEvent(raw, 'open');

    const bytes = Uint8Array.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]);
    a.ps.send(bytes);
    const got = await b.inbox.next();
    assert.equal(got.binary, true, 'binary frame arrived as text');
    assert.ok(got.data instanceof ArrayBuffer, `expected an ArrayBuffer, got ${Object.prototype.toString.call(got.data)}`);
    assert.deepEqual(new Uint8Array(got.data), bytes);
    const rawGot = await rawInbox.next();
    assert.equal(rawGot.binary, true);
    assert.ok(Buffer.isBuffer(rawGot.data));
    assert.deepEqual(new Uint8Array(rawGot.data), bytes);

    // Bytes that happen to be valid UTF-8 are still a binary message.
    a.ps.send(new TextEncoder().encode('looks like text'));
    const utf8 = await b.inbox.next();
    assert.equal(utf8.binary, true, 'binary frame with UTF-8 bytes was converted to text');
    assert.equal(new TextDecoder().decode(utf8.data), 'looks like text');
    assert.equal((await rawInbox.next()).binary, true);

    // And text stays text.
    a.ps.send('plain text ✓');
    assert.deepEqual(await b.inbox.next(), { data: 'plain text ✓', binary: false });
    assert.deepEqual(await rawInbox.next(), { data: 'plain text ✓', binary: false });

    // Binary from the ws client reaches the partysocket clients as binary.
    raw.send(Buffer.from([9, 8, 7]), { binary: true });
    for (const x of [a, b]) {
      const m = await x.inbox.next();
      assert.equal(m.binary, true);
      assert.deepEqual(new Uint8Array(m.data), Uint8Array.from([9, 8, 7]));
    }
    raw.close();
    await rawInbox.closed();
  });

  it('GET on the room reports its name and number of open connections', async () => {
    const room = uniqueRoom('chat-count');
    assert.deepEqual(await getJson(server.port, `/parties/chat/${room}`), { room, connections: 0 });
    const [, , c] = await join(room, 3); // join() checks connections == 3

    // PartySocket.fetch addresses the same room.
    const res = await PartySocket.fetch({ host: `127.0.0.1:${server.port}`, party: 'chat', room });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(await res.json(), { room, connections: 3 });

    // A closed connection no longer counts once its close handshake is over.
    // partysocket dispatches its own close event at once; the underlying ws
    // socket's 'close' comes after the server's Close reply.
    const underlying = c.ps._ws;
    const handshake = waitEvent(underlying, 'close', undefined, 'for the Close reply to client c');
    c.ps.close(1000, 'leaving');
    const [code] = await handshake;
    assert.equal(code, 1000);
    assert.deepEqual(await getJson(server.port, `/parties/chat/${room}`), { room, connections: 2 });
  });
});
