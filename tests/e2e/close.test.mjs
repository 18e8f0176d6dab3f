// The close handshake with real clients: a client's Close (with a code, or
// with none) is answered with a Close and the server then closes its TCP
// side (no socket of partyd left in CLOSE-WAIT); server-initiated closes
// arrive with their code and reason; on_close sees what the peer sent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import WS from 'ws';
import {
  Inbox, TIMEOUT_MS, getJson, serverSideOf, startPartyd, stopPartyd, uniqueRoom, waitEvent,
  waitServerReleased, withTimeout,
} from './helpers.mjs';

let server;
const sockets = new Set();

before(async () => {
  server = await startPartyd(['--close-timeout', '0.5']); // short wait for missing Close replies
});

after(async () => {
  for (const s of sockets) {
    if (s instanceof WS) s.terminate();
    else s.destroy();
  }
  await stopPartyd(server);
});

/**
 * Opens a ws client to a probe room with a known id and waits for the
 * probe's greeting. Also watches the TCP socket for the server's FIN.
 */
async function openProbe(room, id) {
  const ws = new WS(`ws://127.0.0.1:${server.port}/parties/probe/${encodeURIComponent(room)}?_pk=${id}`);
  sockets.add(ws);
  const inbox = new Inbox(ws, `ws ${id}`);
  const errors = [];
  ws.on('error', (err) => errors.push(err));
  let wasClean = null;
  ws.addEventListener('close', (ev) => {
    wasClean = ev.wasClean;
  });
  await waitEvent(ws, 'open', TIMEOUT_MS, `for ${id} to connect`);
  assert.match(await inbox.nextText(), new RegExp(`^hello:${id}:`));
  const tcp = ws._socket; // ws keeps the net.Socket here
  const clientPort = tcp.localPort;
  // The /proc lookup must see this connection, or the release checks
  // below would pass for nothing.
  const serverSide = serverSideOf(server.pid, clientPort);
  assert.ok(serverSide, `partyd (pid ${server.pid}) holds no socket for client port ${clientPort}`);
  assert.equal(serverSide.state, 'ESTABLISHED');
  const fin = waitEvent(tcp, 'end', TIMEOUT_MS, `for the server's FIN on ${id}'s TCP socket`);
  fin.catch(() => {}); // awaited by the tests that need it
  return { ws, inbox, errors, clientPort, fin, wasClean: () => wasClean };
}

async function probeLog(room) {
  return (await getJson(server.port, `/parties/probe/${encodeURIComponent(room)}`)).log;
}

// ---- a minimal raw WebSocket client, to see the bytes on the wire ----------

function maskedFrame(opcode, payload = Buffer.alloc(0)) {
  assert.ok(payload.length < 126);
  const mask = crypto.randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, body]);
}

/** Unmasked server frames from buf: [{fin, opcode, payload}], rest. */
function parseFrames(buf) {
  const frames = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off];
    const b1 = buf[off + 1];
    assert.equal(b1 & 0x80, 0, 'server frames must not be masked');
    let len = b1 & 0x7f;
    let head = 2;
    if (len === 126) {
      if (buf.length - off < 4) break;
      len = buf.readUInt16BE(off + 2);
      head = 4;
    } else if (len === 127) {
      if (buf.length - off < 10) break;
      len = Number(buf.readBigUInt64BE(off + 2));
      head = 10;
    }
    if (buf.length - off < head + len) break;
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload: buf.subarray(off + head, off + head + len) });
    off += head + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/** A raw TCP client that does the upgrade handshake itself. */
async function rawOpen(urlPath) {
  const sock = net.connect({ host: '127.0.0.1', port: server.port });
  sockets.add(sock);
  await waitEvent(sock, 'connect');
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(`GET ${urlPath} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const state = { buf: Buffer.alloc(0), frames: [], ended: false, closed: false, head: null, waiters: new Set() };
  const wake = () => state.waiters.forEach((w) => w());
  sock.on('data', (chunk) => {
    state.buf = Buffer.concat([state.buf, chunk]);
    if (state.head === null) {
      const i = state.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      state.head = state.buf.subarray(0, i).toString('latin1');
      state.buf = state.buf.subarray(i + 4);
    }
    const { frames, rest } = parseFrames(state.buf);
    state.frames.push(...frames);
    state.buf = rest;
    wake();
  });
  sock.on('end', () => {
    state.ended = true;
    wake();
  });
  sock.on('close', () => {
    state.closed = true;
    wake();
  });
  sock.on('error', () => {});
  const until = (cond, what) => {
    let w;
    return withTimeout(new Promise((resolve) => {
      w = () => cond() && resolve();
      state.waiters.add(w);
      w();
    }), TIMEOUT_MS, () => `raw client: timed out ${what}; head ${JSON.stringify(state.head)}, ` +
      `frames ${JSON.stringify(state.frames.map((f) => [f.opcode, f.payload.toString('hex')]))}, ended ${state.ended}`)
      .finally(() => state.waiters.delete(w));
  };
  await until(() => state.head !== null, 'for the handshake response');
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  assert.match(state.head, /^HTTP\/1\.1 101 /);
  assert.match(state.head, new RegExp(`\\r\\nsec-websocket-accept: *${accept.replace(/[+/=]/g, '\\$&')}`, 'i'));
  return { sock, state, until };
}

describe('close handshake', () => {
  it('client Close(4321, "bye now"): clean close with 4321, on_close sees it, server closes TCP', async () => {
    const room = uniqueRoom('close-code');
    const c = await openProbe(room, 'closer-4321');
    const closed = waitEvent(c.ws, 'close', TIMEOUT_MS, 'for the Close reply');
    c.ws.close(4321, 'bye now');
    const [code] = await closed;
    assert.equal(code, 4321, 'the Close reply must carry the client\'s code (1006 = no Close reply)');
    assert.equal(c.wasClean(), true);
    assert.deepEqual(c.errors, []);
    await c.fin; // the server's FIN reached the client
    await waitServerReleased(server.pid, c.clientPort);
    const log = await probeLog(room);
    assert.deepEqual(log.filter((l) => l.startsWith('close:closer-4321:')), ['close:closer-4321:4321:bye now:1'],
      `on_close exactly once with the peer's code and reason; log ${JSON.stringify(log)}`);
  });

  it('client Close with no code: Close reply without a code (1005), on_close(1005), no CLOSE-WAIT', async () => {
    const room = uniqueRoom('close-nocode');
    const c = await openProbe(room, 'closer-bare');
    const closed = waitEvent(c.ws, 'close', TIMEOUT_MS, 'for the Close reply');
    c.ws.close(); // ws 8 sends a Close frame with an empty payload
    const [code, reason] = await closed;
    assert.equal(code, 1005, 'ws reports 1005 when the reply has no code');
    assert.equal(reason.length, 0);
    assert.equal(c.wasClean(), true);
    assert.deepEqual(c.errors, [], 'a Close reply carrying 1005 on the wire is a protocol error for ws');
    await c.fin;
    await waitServerReleased(server.pid, c.clientPort);
    const log = await probeLog(room);
    assert.deepEqual(log.filter((l) => l.startsWith('close:closer-bare:')), ['close:closer-bare:1005::1'],
      `log ${JSON.stringify(log)}`);
  });

  it('raw empty Close frame: the reply on the wire is exactly 0x88 0x00, then the server FIN', async () => {
    const room = uniqueRoom('close-raw');
    const r = await rawOpen(`/parties/probe/${room}?_pk=raw-bare`);
    await r.until(() => r.state.frames.length >= 1, 'for the probe greeting');
    assert.equal(r.state.frames[0].opcode, 1);
    assert.match(r.state.frames[0].payload.toString('utf8'), /^hello:raw-bare:/);
    const clientPort = r.sock.localPort;
    assert.equal(serverSideOf(server.pid, clientPort)?.state, 'ESTABLISHED');

    r.sock.write(maskedFrame(0x8)); // Close, no payload
    await r.until(() => r.state.frames.length >= 2, 'for the Close reply');
    const reply = r.state.frames[1];
    assert.equal(reply.opcode, 0x8, 'expected a Close frame');
    assert.equal(reply.payload.length, 0, `Close reply must carry no code, got ${reply.payload.toString('hex')}`);
    await r.until(() => r.state.ended, 'for the server FIN after the Close reply');
    assert.equal(r.state.frames.length, 2, 'nothing may follow the Close');
    r.sock.end();
    await r.until(() => r.state.closed, 'for the socket to close');
    await waitServerReleased(server.pid, clientPort);
    const log = await probeLog(room);
    assert.deepEqual(log.filter((l) => l.startsWith('close:raw-bare:')), ['close:raw-bare:1005::1']);
  });

  it('server-initiated close (probe "close:4000:done") reaches the client as 4000 "done"', async () => {
    const room = uniqueRoom('close-server');
    const c = await openProbe(room, 'closed-by-server');
    const closed = waitEvent(c.ws, 'close', TIMEOUT_MS, 'for the server Close');
    c.ws.send('close:4000:done');
    const [code, reason] = await closed;
    assert.equal(code, 4000);
    assert.equal(reason.toString('utf8'), 'done');
    assert.equal(c.wasClean(), true);
    assert.deepEqual(c.errors, []);
    await c.fin;
    await waitServerReleased(server.pid, c.clientPort);
    const log = await probeLog(room);
    const mine = log.filter((l) => l.startsWith('close:closed-by-server:'));
    assert.equal(mine.length, 1, `on_close exactly once; log ${JSON.stringify(log)}`);
    // ws answers with the same code and reason.
    assert.equal(mine[0], 'close:closed-by-server:4000:done:1');
  });

  it('refuses a server close reason over 123 bytes and keeps the connection open', async () => {
    const room = uniqueRoom('close-long');
    const c = await openProbe(room, 'long-reason');
    c.ws.send(`close:4000:${'r'.repeat(124)}`);
    assert.match(await c.inbox.nextText(), /^error:/);
    c.ws.send('still here');
    assert.equal(await c.inbox.nextText(), 'echo:still here');
    c.ws.send(`close:4001:${'r'.repeat(123)}`); // exactly the limit is fine
    const [code, reason] = await waitEvent(c.ws, 'close');
    assert.equal(code, 4001);
    assert.equal(reason.length, 123);
  });

  it('transport dropped without Close: on_close(1006, "", 0) and the socket is released', async () => {
    const room = uniqueRoom('close-drop');
    const c = await openProbe(room, 'dropper');
    c.ws._socket.end(); // FIN without a Close frame
    await c.fin;
    await waitServerReleased(server.pid, c.clientPort);
    const log = await probeLog(room);
    assert.deepEqual(log.filter((l) => l.startsWith('close:dropper:')), ['close:dropper:1006::0'],
      `log ${JSON.stringify(log)}`);
  });
  it('Close frame followed at once by FIN: on_close once, Close reply still sent, socket released', async () => {
    const room = uniqueRoom('close-fin');
    const r = await rawOpen(`/parties/probe/${room}?_pk=raw-fin`);
    await r.until(() => r.state.frames.length >= 1, 'for the probe greeting');
    const clientPort = r.sock.localPort;
    const payload = Buffer.concat([Buffer.from([0x0f, 0xa2]), Buffer.from('half')]); // 4002 "half"
    r.sock.end(maskedFrame(0x8, payload)); // Close, then our FIN in the same breath
    await r.until(() => r.state.closed, 'for the server to close the connection');
    const reply = r.state.frames[1];
    assert.ok(reply, 'no Close reply before the server closed');
    assert.equal(reply.opcode, 0x8);
    assert.equal(reply.payload.readUInt16BE(0), 4002, 'the Close reply carries the client code');
    await waitServerReleased(server.pid, clientPort);
    const log = await probeLog(room);
    assert.deepEqual(log.filter((l) => l.startsWith('close:raw-fin:')), ['close:raw-fin:4002:half:1'],
      `log ${JSON.stringify(log)}`);
  });

  it('an idle keep-alive HTTP connection closed by the client is released (no CLOSE-WAIT)', async () => {
    const room = uniqueRoom('close-http');
    const sock = net.connect({ host: '127.0.0.1', port: server.port });
    sockets.add(sock);
    await waitEvent(sock, 'connect');
    let text = '';
    sock.setEncoding('latin1');
    sock.on('data', (d) => {
      text += d;
    });
    const clientPort = sock.localPort;
    sock.write(`GET /parties/probe/${room} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
    await withTimeout(new Promise((resolve) => {
      const check = () => {
        const m = /content-length: *(\d+)\r\n[^]*?\r\n\r\n/i.exec(text);
        if (m && text.length - (m.index + m[0].length) >= Number(m[1])) resolve();
      };
      sock.on('data', check);
      check();
    }), TIMEOUT_MS, () => `HTTP response: ${JSON.stringify(text)}`);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.equal(serverSideOf(server.pid, clientPort)?.state, 'ESTABLISHED', 'keep-alive connection stays open');
    const end = waitEvent(sock, 'end', TIMEOUT_MS, 'for the server FIN');
    sock.end();
    await end;
    await waitServerReleased(server.pid, clientPort);
  });
  it('server close never answered: dropped after --close-timeout, on_close(1006, "", 0)', async () => {
    const room = uniqueRoom('close-timeout');
    const r = await rawOpen(`/parties/probe/${room}?_pk=raw-mute`);
    await r.until(() => r.state.frames.length >= 1, 'for the probe greeting');
    const clientPort = r.sock.localPort;
    r.sock.write(maskedFrame(0x1, Buffer.from('close:4003:please')));
    await r.until(() => r.state.frames.length >= 2, 'for the server Close');
    assert.equal(r.state.frames[1].opcode, 0x8);
    assert.equal(r.state.frames[1].payload.readUInt16BE(0), 4003);
    assert.equal(r.state.frames[1].payload.subarray(2).toString(), 'please');
    // No reply from us: the server gives up after 0.5 s and closes TCP.
    await r.until(() => r.state.ended, 'for the server to drop the connection after its close timeout');
    r.sock.end();
    await waitServerReleased(server.pid, clientPort);
    const log = await probeLog(room);
    assert.deepEqual(log.filter((l) => l.startsWith('close:raw-mute:') || l.startsWith('error:raw-mute:')),
      ['close:raw-mute:1006::0'], `log ${JSON.stringify(log)}`);
  });

  it('garbage after the server Close is not reported to on_error', async () => {
    const room = uniqueRoom('close-garbage');
    const r = await rawOpen(`/parties/probe/${room}?_pk=raw-garbage`);
    await r.until(() => r.state.frames.length >= 1, 'for the probe greeting');
    const clientPort = r.sock.localPort;
    r.sock.write(maskedFrame(0x1, Buffer.from('close:4004:bye')));
    await r.until(() => r.state.frames.length >= 2, 'for the server Close');
    // An unmasked frame with a reserved opcode: a protocol error, but the
    // connection is already closing.
    r.sock.write(Buffer.from([0x83, 0x00]));
    await r.until(() => r.state.ended, 'for the server to close');
    r.sock.end();
    await waitServerReleased(server.pid, clientPort);
    const log = await probeLog(room);
    const mine = log.filter((l) => l.startsWith('close:raw-garbage:') || l.startsWith('error:raw-garbage:'));
    assert.equal(mine.length, 1, `on_close once and no on_error; log ${JSON.stringify(log)}`);
    assert.match(mine[0], /^close:raw-garbage:/);
  });

  it('messages sent just before a Close are answered before the Close reply', async () => {
    // The counter writes on every message, so the messages behind the
    // first wait for its commit; the Close read meanwhile must not cut
    // their replies off.
    const room = uniqueRoom('close-behind');
    const r = await rawOpen(`/parties/counter/${room}?_pk=raw-behind`);
    r.sock.write(Buffer.concat([
      maskedFrame(0x1, Buffer.from('a')), maskedFrame(0x1, Buffer.from('b')),
      maskedFrame(0x1, Buffer.from('c')), maskedFrame(0x8, Buffer.from([0x03, 0xe8])),
    ]));
    await r.until(() => r.state.ended, 'for the server FIN after the Close reply');
    const got = r.state.frames.map((f) => [f.opcode, f.payload.toString(f.opcode === 8 ? 'hex' : 'utf8')]);
    assert.deepEqual(got, [[1, '1'], [1, '2'], [1, '3'], [8, '03e8']],
      `replies to all three messages, then the Close echo; got ${JSON.stringify(got)}`);
    r.sock.end();
  });
});
