// Connection identity as partysocket sees it: the id it sends as _pk is the
// server-side connection id, and the room sees the full original URL. The
// probe party greets each connection with "hello:<id>:<room>:<uri>".
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import WS from 'ws';
import { Inbox, TIMEOUT_MS, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

let server;
const sockets = new Set();

before(async () => {
  server = await startPartyd();
});

after(async () => {
  for (const s of sockets) s.close();
  await stopPartyd(server);
});

function probeSocket(room, options = {}) {
  const ps = new PartySocket({
    host: `127.0.0.1:${server.port}`,
    party: 'probe',
    room,
    WebSocket: WS,
    maxRetries: 0,
    ...options,
  });
  sockets.add(ps);
  return { ps, inbox: new Inbox(ps, `partysocket ${options.id ?? ''}`.trim()) };
}

/** Splits "hello:<id>:<room>:<uri>" where id and room contain no ':'. */
function parseHello(text) {
  const m = /^hello:([^:]*):([^:]*):(.*)$/s.exec(text);
  assert.ok(m, `not a probe greeting: ${JSON.stringify(text)}`);
  return { id: m[1], room: m[2], uri: m[3] };
}

describe('connection identity', () => {
  it('uses the id partysocket generates (its .id) as the connection id', async () => {
    const room = uniqueRoom('id-generated');
    const { ps, inbox } = probeSocket(room);
    assert.match(ps.id, /^[0-9a-f-]{36}$/, 'partysocket generates a UUID');
    const hello = parseHello(await inbox.nextText());
    assert.equal(hello.id, ps.id);
    assert.equal(hello.room, room);
    assert.equal(hello.uri, `/parties/probe/${room}?_pk=${ps.id}`, 'uri is the full original URL with _pk');
  });

  it('uses the id option given to partysocket as the connection id, findable in the room', async () => {
    const room = uniqueRoom('id-given');
    const alice = probeSocket(room, { id: 'alice-123' });
    const hello = parseHello(await alice.inbox.nextText());
    assert.equal(alice.ps.id, 'alice-123');
    assert.deepEqual(hello, { id: 'alice-123', room, uri: `/parties/probe/${room}?_pk=alice-123` });

    // Another connection of the room finds it by that id.
    const bob = probeSocket(room, { id: 'bob-456' });
    assert.equal(parseHello(await bob.inbox.nextText()).id, 'bob-456');
    bob.ps.send('whois:alice-123');
    assert.equal(await bob.inbox.nextText(), 'whois:alice-123:1');
    bob.ps.send('whois:nobody');
    assert.equal(await bob.inbox.nextText(), 'whois:nobody:0');

    // The id is the first tag.
    alice.ps.send('tags');
    assert.equal(await alice.inbox.nextText(), 'tags:alice-123');
  });

  it('keeps extra query parameters in the uri and gives tags after the id', async () => {
    const room = uniqueRoom('id-query');
    const { ps, inbox } = probeSocket(room, { id: 'carol', query: { tags: 'red,blue', v: '2' } });
    const hello = parseHello(await inbox.nextText());
    assert.equal(hello.id, 'carol');
    assert.equal(hello.uri, `/parties/probe/${room}?_pk=carol&tags=red%2Cblue&v=2`);
    ps.send('tags');
    assert.equal(await inbox.nextText(), 'tags:carol,red,blue');
  });

  it('decodes an id that partysocket had to encode (space as +, slash, UTF-8)', async () => {
    const room = uniqueRoom('id-encoded');
    const id = 'user 1/ä';
    const { ps, inbox } = probeSocket(room, { id });
    const hello = parseHello(await inbox.nextText());
    // URLSearchParams writes the space as '+', which every URL-search-params
    // reader (PartyServer's url.searchParams.get('_pk')) decodes to a space.
    assert.equal(hello.uri, `/parties/probe/${room}?_pk=user+1%2F%C3%A4`);
    assert.equal(hello.id, id, 'server-side id differs from partysocket .id');
    ps.send(`whois:${id}`);
    assert.equal(await inbox.nextText(), `whois:${id}:1`);
  });

  it('decodes the room name from the URL path segment', async () => {
    const room = `r ü-${uniqueRoom('x')}`; // the client URL-encodes it
    const { ps, inbox } = probeSocket(room, { id: 'dave' });
    const hello = parseHello(await inbox.nextText());
    assert.equal(hello.room, room);
    assert.equal(hello.uri, `/parties/probe/${encodeURIComponent(room)}?_pk=dave`);
    ps.close();
  });

  it('gives a ws client without _pk a generated, unique id', async () => {
    const room = uniqueRoom('id-none');
    const ids = [];
    for (let i = 0; i < 2; i++) {
      const ws = new WS(`ws://127.0.0.1:${server.port}/parties/probe/${room}`);
      sockets.add(ws);
      const inbox = new Inbox(ws, `ws ${i}`);
      await waitEvent(ws, 'open');
      const hello = parseHello(await inbox.nextText());
      assert.equal(hello.uri, `/parties/probe/${room}`);
      assert.ok(hello.id.length > 0 && hello.id.length <= 256, `bad generated id ${JSON.stringify(hello.id)}`);
      ids.push(hello.id);
    }
    assert.notEqual(ids[0], ids[1]);
  });
  it('keeps the same id when partysocket reconnects after a server close', async () => {
    const room = uniqueRoom('id-reconnect');
    const ps = new PartySocket({
      host: `127.0.0.1:${server.port}`,
      party: 'probe',
      room,
      id: 'eve',
      WebSocket: WS,
      maxRetries: 1, // exactly one reconnection
      minReconnectionDelay: 10,
      maxReconnectionDelay: 50,
    });
    sockets.add(ps);
    const inbox = new Inbox(ps, 'eve');
    assert.equal(parseHello(await inbox.nextText()).id, 'eve');
    const reopened = waitEvent(ps, 'open', undefined, 'for the reconnection');
    const firstWs = ps._ws;
    ps.send('close:4000:come back');
    await reopened;
    assert.notEqual(ps._ws, firstWs, 'a new WebSocket was opened');
    // The inbox saw the first socket close: wait for the new greeting itself
    // rather than next(), which gives up on a closed socket.
    await inbox.until(() => inbox.read < inbox.messages.length, TIMEOUT_MS,
      'for the greeting after the reconnection');
    assert.equal(parseHello(await inbox.nextText()).id, 'eve');
    const res = await PartySocket.fetch({ host: `127.0.0.1:${server.port}`, party: 'probe', room });
    const state = await res.json();
    assert.equal(state.connects, 2);
    assert.equal(state.connections, 1);
    assert.deepEqual(state.log, ['close:eve:4000:come back:1']);
    ps.close();
  });
});
