// SIGTERM: partyd closes every open WebSocket with 1001 ("going away") and
// exits with status 0, promptly, even with idle HTTP connections or a client
// that never answers the Close.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import PartySocket from 'partysocket';
import WS from 'ws';
import {
  Inbox, TIMEOUT_MS, getJson, startPartyd, stopPartyd, terminatePartyd, uniqueRoom, waitEvent, withTimeout,
} from './helpers.mjs';

const sockets = new Set();

after(() => {
  for (const s of sockets) {
    if (s instanceof WS || s instanceof PartySocket) s.close();
    else s.destroy();
  }
});

async function openWs(port, urlPath, label) {
  const ws = new WS(`ws://127.0.0.1:${port}${urlPath}`);
  sockets.add(ws);
  const inbox = new Inbox(ws, label);
  await waitEvent(ws, 'open', TIMEOUT_MS, `for ${label}`);
  return { ws, inbox };
}

describe('SIGTERM with open WebSockets', () => {
  let server;
  before(async () => {
    server = await startPartyd();
  });
  after(async () => {
    await stopPartyd(server); // no-op kill if already exited; asserts status 0
  });

  it('closes every connection with 1001 and exits with status 0', async () => {
    const probeRoom = uniqueRoom('shutdown-probe');
    const chatRoom = uniqueRoom('shutdown-chat');
    const a = await openWs(server.port, `/parties/probe/${probeRoom}?_pk=a`, 'probe client');
    assert.match(await a.inbox.nextText(), /^hello:a:/);
    const b = await openWs(server.port, `/parties/chat/${chatRoom}`, 'chat ws client');
    const ps = new PartySocket({ host: `127.0.0.1:${server.port}`, party: 'chat', room: chatRoom, WebSocket: WS, maxRetries: 0 });
    sockets.add(ps);
    const psInbox = new Inbox(ps, 'chat partysocket');
    await waitEvent(ps, 'open');
    assert.deepEqual(await getJson(server.port, `/parties/chat/${chatRoom}`), { room: chatRoom, connections: 2 });
    const fins = [a, b].map(({ ws }) => waitEvent(ws._socket, 'end', TIMEOUT_MS, 'for the server FIN'));
    fins.forEach((p) => p.catch(() => {}));
    const wsErrors = [];
    for (const { ws } of [a, b]) ws.on('error', (e) => wsErrors.push(e));

    const exit = terminatePartyd(server); // SIGTERM by pid, waits for the exit

    for (const [label, inbox] of [['probe ws', a.inbox], ['chat ws', b.inbox], ['partysocket', psInbox]]) {
      const { code } = await inbox.closed();
      assert.equal(code, 1001, `${label} closed with ${code}, expected 1001 (going away)`);
    }
    await Promise.all(fins);
    assert.deepEqual(wsErrors, []);
    const { code, signal } = await exit;
    assert.equal(signal, null, `partyd killed by ${signal}:\n${server.stderr()}`);
    assert.equal(code, 0, `partyd exit status ${code}:\n${server.stderr()}`);
    assert.match(server.stderr(), /SIGTERM/);
  });
});

describe('SIGTERM with idle and unresponsive clients', () => {
  let server;
  before(async () => {
    server = await startPartyd(['--close-timeout', '0.5']);
  });
  after(async () => {
    await stopPartyd(server);
  });

  it('does not wait for idle HTTP connections, half-sent requests or missing Close replies', async () => {
    const room = uniqueRoom('shutdown-stuck');
    // An idle keep-alive HTTP connection after one request.
    const idle = net.connect({ host: '127.0.0.1', port: server.port });
    sockets.add(idle);
    idle.on('error', () => {});
    await waitEvent(idle, 'connect');
    idle.write(`GET /parties/chat/${room} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await waitEvent(idle, 'data', TIMEOUT_MS, 'for the response on the keep-alive connection');
    // A request head that never completes.
    const partial = net.connect({ host: '127.0.0.1', port: server.port });
    sockets.add(partial);
    partial.on('error', () => {});
    await waitEvent(partial, 'connect');
    partial.write(`GET /parties/chat/${room} HTTP/1.1\r\nHost: x\r\n`);
    // A WebSocket client that never answers the server's Close.
    const mute = net.connect({ host: '127.0.0.1', port: server.port });
    sockets.add(mute);
    mute.on('error', () => {});
    await waitEvent(mute, 'connect');
    let muteBytes = Buffer.alloc(0);
    mute.on('data', (d) => {
      muteBytes = Buffer.concat([muteBytes, d]);
    });
    mute.write(`GET /parties/probe/${room}?_pk=mute HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    await withTimeout(new Promise((resolve) => {
      const check = () => muteBytes.includes(`hello:mute:${room}:/parties/probe/${room}?_pk=mute`) && resolve();
      mute.on('data', check);
      check();
    }), TIMEOUT_MS, 'for the upgrade and greeting of the mute client');
    const greeted = muteBytes.length;
    const muteEnd = waitEvent(mute, 'end', TIMEOUT_MS, 'for the server to drop the mute client');

    const started = Date.now();
    const { code, signal } = await terminatePartyd(server);
    const took = Date.now() - started;
    assert.equal(signal, null);
    assert.equal(code, 0, `partyd exit status ${code}:\n${server.stderr()}`);
    assert.ok(took < 4000, `shutdown took ${took} ms with --close-timeout 0.5`);
    await muteEnd;
    // The mute client was sent Close(1001) before being dropped.
    const close = muteBytes.subarray(greeted);
    assert.ok(close.length >= 4, `no Close frame sent to the mute client (got ${close.toString('hex')})`);
    assert.equal(close[0], 0x88, `expected a Close frame, got ${close.toString('hex')}`);
    assert.equal(close.readUInt16BE(2), 1001);
  });
});
