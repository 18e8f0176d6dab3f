// on_start with real clients: once per room incarnation even when
// WebSockets and a request race to a cold room; a failing on_start closes
// the WebSocket with 1011 after a JSON error frame, answers HTTP with 500,
// and is retried by the next event. Also routing errors seen by clients.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import WS from 'ws';
import { Inbox, TIMEOUT_MS, getJson, httpRequest, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

let server;
const sockets = new Set();

before(async () => {
  server = await startPartyd();
});

after(async () => {
  for (const s of sockets) s.terminate();
  await stopPartyd(server);
});

function ws(urlPath, label) {
  const w = new WS(`ws://127.0.0.1:${server.port}${urlPath}`);
  sockets.add(w);
  w.on('error', () => {});
  return { ws: w, inbox: new Inbox(w, label) };
}

/** Resolves with {status, body} when the upgrade is refused with HTTP. */
function refusedUpgrade(w) {
  return waitEvent(w, 'unexpected-response', TIMEOUT_MS, 'for the upgrade to be refused').then(([, res]) =>
    new Promise((resolve) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    }));
}

describe('on_start', () => {
  it('runs once for WebSockets and a request racing to a cold room', async () => {
    const room = uniqueRoom('race');
    const clients = [1, 2, 3].map((i) => ws(`/parties/probe/${room}?_pk=r${i}`, `racer ${i}`));
    const [res] = await Promise.all([
      PartySocket.fetch({ host: `127.0.0.1:${server.port}`, party: 'probe', room }),
      ...clients.map(({ inbox }) => inbox.nextText()),
    ]);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).starts, 1);
    const state = await getJson(server.port, `/parties/probe/${room}`);
    assert.equal(state.starts, 1, 'on_start ran more than once');
    assert.equal(state.connects, 3);
    assert.equal(state.connections, 3);
  });

  it('failing on_start: WebSocket gets a JSON error frame then 1011, and the next connection retries', async () => {
    const room = `fail-start-1-${uniqueRoom('ws')}`; // probe fails its first on_start
    const first = ws(`/parties/probe/${room}?_pk=first`, 'first');
    const frame = await first.inbox.nextText();
    const err = JSON.parse(frame);
    assert.equal(err.type, 'error');
    assert.equal(typeof err.error, 'string');
    const { code } = await first.inbox.closed();
    assert.equal(code, 1011);

    const second = ws(`/parties/probe/${room}?_pk=second`, 'second');
    assert.equal(await second.inbox.nextText(), `hello:second:${room}:/parties/probe/${room}?_pk=second`);
    const state = await getJson(server.port, `/parties/probe/${room}`);
    assert.equal(state.starts, 1, 'one successful start');
    assert.equal(state.connects, 1, 'on_connect only for the connection after a good start');
  });

  it('failing on_start: HTTP gets 500 and the next request retries', async () => {
    const room = `fail-start-2-${uniqueRoom('http')}`; // fails twice
    assert.equal((await httpRequest(server.port, 'GET', `/parties/probe/${room}`)).status, 500);
    assert.equal((await httpRequest(server.port, 'GET', `/parties/probe/${room}`)).status, 500);
    const ok = await getJson(server.port, `/parties/probe/${room}`);
    assert.equal(ok.name, room);
    assert.equal(ok.starts, 1);
  });
});

describe('routing and refusals seen by clients', () => {
  it('refuses an upgrade to an unknown party with 400', async () => {
    const { ws: w } = ws(`/parties/nope/${uniqueRoom('x')}`, 'unknown party');
    const { status } = await refusedUpgrade(w);
    assert.equal(status, 400);
  });

  it('answers 404 outside the room prefix', async () => {
    assert.equal((await httpRequest(server.port, 'GET', '/not-parties/probe/x')).status, 404);
  });

  it('accepts 9 tags besides the id and refuses 10 with a clear error', async () => {
    const room = uniqueRoom('tags');
    const nine = Array.from({ length: 9 }, (_, i) => `t${i}`).join(',');
    const ok = ws(`/parties/probe/${room}?_pk=nine&tags=${nine}`, 'nine tags');
    assert.match(await ok.inbox.nextText(), /^hello:nine:/);
    ok.ws.send('tags');
    assert.equal(await ok.inbox.nextText(), `tags:nine,${nine}`);

    const ten = Array.from({ length: 10 }, (_, i) => `t${i}`).join(',');
    const refused = ws(`/parties/probe/${room}?_pk=ten&tags=${ten}`, 'ten tags');
    const { status, body } = await refusedUpgrade(refused.ws);
    assert.ok(status >= 400, `status ${status}`);
    assert.match(body, /tags/);
    const state = await getJson(server.port, `/parties/probe/${room}`);
    assert.equal(state.connections, 1, 'the refused connection must not join the room');
  });

  it('refuses a tag over 256 bytes', async () => {
    const room = uniqueRoom('longtag');
    const refused = ws(`/parties/probe/${room}?_pk=long&tags=${'t'.repeat(257)}`, 'long tag');
    const { status, body } = await refusedUpgrade(refused.ws);
    assert.ok(status >= 400, `status ${status}`);
    assert.match(body, /256/);
    const ok = ws(`/parties/probe/${room}?_pk=exact&tags=${'t'.repeat(256)}`, 'exact tag');
    assert.match(await ok.inbox.nextText(), /^hello:exact:/);
  });
});
