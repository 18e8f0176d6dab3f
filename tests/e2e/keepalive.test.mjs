// Keepalive with real npm clients: partyd runs with --ping-interval 0.3.
// A partysocket client (whose ws answers pings by itself) stays open and
// keeps working, while a ws client told not to answer pings (autoPong off)
// is closed by the server with 1001 "ping timeout" in the same period.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import WS from 'ws';
import { Inbox, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

let server;

before(async () => {
  server = await startPartyd(['--ping-interval', '0.3', '--close-timeout', '1']);
});

after(async () => {
  await stopPartyd(server);
});

test('a partysocket client answers pings and stays; a silent one is closed with 1001', async () => {
  const room = uniqueRoom('keepalive');
  const ps = new PartySocket({
    host: `127.0.0.1:${server.port}`, party: 'probe', room, id: 'alive', WebSocket: WS, maxRetries: 0,
  });
  const inbox = new Inbox(ps, 'alive');
  await waitEvent(ps, 'open');
  assert.match(await inbox.nextText(), /^hello:alive:/);

  const silent = new WS(`ws://127.0.0.1:${server.port}/parties/probe/${room}?_pk=silent`, {
    autoPong: false,
  });
  await waitEvent(silent, 'open');
  // Both are idle from here; only the silent one is closed (within three
  // intervals and a bit). partysocket's connection went quiet first, so it
  // was pinged at the same sweep or earlier: it is still open only because
  // its pongs counted.
  const [code, reason] = await waitEvent(silent, 'close', 5000, 'the silent client to be closed');
  assert.equal(code, 1001);
  assert.equal(reason.toString(), 'ping timeout');

  assert.equal(ps.readyState, WS.OPEN);
  ps.send('still here');
  assert.equal(await inbox.nextText(), 'echo:still here');
  ps.close();
});
