// HTTP to rooms with partysocket's PartySocket.fetch (global fetch of Node),
// and the greeter example party loaded from a shared object.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import WS from 'ws';
import { Inbox, getJson, httpRequest, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

let server;
const sockets = new Set();

before(async () => {
  server = await startPartyd();
});

after(async () => {
  for (const s of sockets) s.terminate();
  await stopPartyd(server);
});

const host = () => `127.0.0.1:${server.port}`;

describe('PartySocket.fetch to a room', () => {
  it('GET reaches on_request of the named room', async () => {
    const room = uniqueRoom('fetch-get');
    const res = await PartySocket.fetch({ host: host(), party: 'probe', room });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = await res.json();
    assert.equal(body.name, room);
    assert.equal(body.starts, 1, 'on_start ran once before the request');
    assert.equal(body.connections, 0);
    assert.match(body.url, new RegExp(`^/parties/probe/${room}\\??$`));
  });

  it('POST body is echoed by the probe with status 201', async () => {
    const room = uniqueRoom('fetch-post');
    const payload = JSON.stringify({ hello: 'world', n: [1, 2, 3], s: 'ünï' });
    const res = await PartySocket.fetch({ host: host(), party: 'probe', room }, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: payload,
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-probe-method'), 'POST');
    assert.equal(await res.text(), payload);
  });

  it('keeps extra path segments and the query on the request the room sees', async () => {
    const room = uniqueRoom('fetch-path');
    const res = await PartySocket.fetch({ host: host(), party: 'probe', room, path: 'sub/path', query: { a: '1', b: 'x y' } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.name, room);
    assert.equal(body.url, `/parties/probe/${room}/sub/path?a=1&b=x+y`);
  });

  it('matches the party name case-insensitively and answers 400 for an unknown party', async () => {
    const room = uniqueRoom('fetch-case');
    const res = await PartySocket.fetch({ host: host(), party: 'PROBE', room });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).name, room);
    const unknown = await PartySocket.fetch({ host: host(), party: 'no-such-party', room });
    assert.equal(unknown.status, 400);
    await unknown.arrayBuffer();
  });

  it('sees the same room state over HTTP as over WebSocket', async () => {
    const room = uniqueRoom('fetch-shared');
    const ps = new PartySocket({ host: host(), party: 'probe', room, id: 'watcher', WebSocket: WS, maxRetries: 0 });
    const inbox = new Inbox(ps, 'watcher');
    try {
      assert.match(await inbox.nextText(), /^hello:watcher:/);
      const body = await (await PartySocket.fetch({ host: host(), party: 'probe', room })).json();
      assert.equal(body.connections, 1);
      assert.equal(body.connects, 1);
      assert.equal(body.starts, 1, 'one on_start for the WebSocket and the request');
    } finally {
      ps.close();
    }
  });
});

describe('greeter party loaded from a shared object', () => {
  it('greets a connection by ?name= and counts it on GET', async () => {
    const room = uniqueRoom('greeter');
    const ann = new WS(`ws://127.0.0.1:${server.port}/parties/greeter/${room}?name=ann`);
    sockets.add(ann);
    const annInbox = new Inbox(ann, 'ann');
    await waitEvent(ann, 'open');
    assert.equal(await annInbox.nextText(), `hello ann, welcome to ${room}`);
    assert.deepEqual(await getJson(server.port, `/parties/greeter/${room}`), { greeted: 1 });

    // A second guest: greeted, and ann is told.
    const bob = new WS(`ws://127.0.0.1:${server.port}/parties/greeter/${room}?name=bob&_pk=bob-id`);
    sockets.add(bob);
    const bobInbox = new Inbox(bob, 'bob');
    assert.equal(await bobInbox.nextText(), `hello bob, welcome to ${room}`);
    assert.equal(await annInbox.nextText(), 'bob joined');
    const res = await httpRequest(server.port, 'GET', `/parties/greeter/${room}`);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^application\/json/);
    assert.deepEqual(JSON.parse(res.body), { greeted: 2 });

    // Leaving is announced with the connection id.
    bob.close(1000);
    assert.equal(await annInbox.nextText(), 'bob-id left');
    ann.close(1000);
    await annInbox.closed();
  });
});
