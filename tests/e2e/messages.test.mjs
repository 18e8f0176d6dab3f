// Message framing with a real ws client against the probe party: pings,
// fragmented messages, large messages both ways, the receive size limit
// (1009) and invalid UTF-8 in text (1007).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import WS from 'ws';
import { Inbox, TIMEOUT_MS, getJson, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

const MAX_MESSAGE = 256 * 1024; // --max-message-bytes for this file

let server;
const sockets = new Set();

before(async () => {
  server = await startPartyd(['--max-message-bytes', '256K']);
});

after(async () => {
  for (const s of sockets) s.terminate();
  await stopPartyd(server);
});

async function openProbe(room, id) {
  const ws = new WS(`ws://127.0.0.1:${server.port}/parties/probe/${room}?_pk=${id}`, { maxPayload: 64 * 1024 * 1024 });
  sockets.add(ws);
  const inbox = new Inbox(ws, id);
  const errors = [];
  ws.on('error', (e) => errors.push(e));
  await waitEvent(ws, 'open');
  assert.match(await inbox.nextText(), new RegExp(`^hello:${id}:`));
  return { ws, inbox, errors };
}

describe('messages', () => {
  it('answers a ping with a pong carrying the same payload', async () => {
    const { ws, inbox } = await openProbe(uniqueRoom('ping'), 'pinger');
    const pong = waitEvent(ws, 'pong');
    ws.ping(Buffer.from('are you there'));
    const [payload] = await pong;
    assert.equal(payload.toString(), 'are you there');
    ws.send('after ping');
    assert.equal(await inbox.nextText(), 'echo:after ping');
  });

  it('reassembles a fragmented text message, with a ping between the fragments', async () => {
    const { ws, inbox } = await openProbe(uniqueRoom('frag'), 'fragger');
    ws.send('part one, ', { fin: false });
    ws.ping('mid');
    ws.send('part two, ', { fin: false });
    ws.send('and the end', { fin: true });
    assert.equal(await inbox.nextText(), 'echo:part one, part two, and the end');
    const bytes = Buffer.from([1, 2, 3, 4, 5, 6]);
    ws.send(bytes.subarray(0, 2), { binary: true, fin: false });
    ws.send(bytes.subarray(2), { binary: true, fin: true });
    const m = await inbox.next();
    assert.equal(m.binary, true);
    assert.deepEqual(m.data, bytes);
  });

  it('sends and receives large messages intact', async () => {
    const { ws, inbox } = await openProbe(uniqueRoom('large'), 'large');
    ws.send('big:3000000'); // 3 MB reply: 64-bit length, many TCP writes
    const big = await inbox.nextText(TIMEOUT_MS * 2);
    assert.equal(big.length, 3000000);
    assert.ok(/^x+$/.test(big));
    const up = Buffer.alloc(MAX_MESSAGE, 7); // exactly at the limit
    ws.send(up);
    const back = await inbox.next(TIMEOUT_MS * 2);
    assert.equal(back.binary, true);
    assert.equal(back.data.length, MAX_MESSAGE);
    assert.ok(back.data.equals(up));
  });

  it('closes with 1009 when a received message is over --max-message-bytes', async () => {
    const room = uniqueRoom('too-big');
    const { ws, inbox } = await openProbe(room, 'too-big');
    ws.send(Buffer.alloc(MAX_MESSAGE + 1, 1));
    const { code } = await inbox.closed();
    assert.equal(code, 1009);
    assert.deepEqual(inbox.unread(), [], 'the oversize message must not be delivered');
    const { log } = await getJson(server.port, `/parties/probe/${room}`);
    assert.equal(log.filter((l) => l.startsWith('close:too-big:')).length, 1, `log ${JSON.stringify(log)}`);
  });

  it('closes with 1009 when fragments add up to over the limit', async () => {
    const { ws, inbox } = await openProbe(uniqueRoom('too-big-frag'), 'too-big-frag');
    ws.send(Buffer.alloc(MAX_MESSAGE / 2, 1), { binary: true, fin: false });
    ws.send(Buffer.alloc(MAX_MESSAGE / 2 + 1, 1), { binary: true, fin: true });
    const { code } = await inbox.closed();
    assert.equal(code, 1009);
    assert.deepEqual(inbox.unread(), []);
  });

  it('closes with 1007 on a text message that is not UTF-8, and reports it to on_error', async () => {
    const room = uniqueRoom('bad-utf8');
    const { ws, inbox } = await openProbe(room, 'bad-utf8');
    ws.send(Buffer.from([0x68, 0x69, 0xc3, 0x28]), { binary: false }); // "hi" + invalid sequence
    const { code } = await inbox.closed();
    assert.equal(code, 1007);
    assert.deepEqual(inbox.unread(), [], 'invalid text must not be delivered');
    const { log } = await getJson(server.port, `/parties/probe/${room}`);
    assert.ok(log.some((l) => l.startsWith('error:bad-utf8:')), `no on_error record; log ${JSON.stringify(log)}`);
    assert.equal(log.filter((l) => l.startsWith('close:bad-utf8:')).length, 1, `log ${JSON.stringify(log)}`);
  });
});
