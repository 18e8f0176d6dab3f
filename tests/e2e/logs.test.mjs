// --log-format json: every line partyd writes to stderr is one JSON object
// with time, level and msg.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startPartyd, stopPartyd, waitEvent } from './helpers.mjs';

test('json log lines parse, and carry time, level and message', async () => {
  const server = await startPartyd(['--log-format', 'json']);
  // Something worth logging with awkward characters: a refused handshake.
  const sock = net.connect(server.port, '127.0.0.1');
  sock.resume(); // read (and drop) the answer, so the server's close is seen
  await waitEvent(sock, 'connect');
  sock.write('GET /parties/echo/x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n' +
    'Connection: Upgrade\r\nSec-WebSocket-Version: 12\r\nSec-WebSocket-Key: x\r\n\r\n');
  await waitEvent(sock, 'close');
  const text = server.stderr();
  await stopPartyd(server);
  const lines = text.trim().split('\n');
  assert.ok(lines.length >= 2, text);
  for (const line of lines) {
    const entry = JSON.parse(line);
    assert.match(entry.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(['error', 'warn', 'info', 'debug'].includes(entry.level), line);
    assert.equal(typeof entry.msg, 'string');
  }
  assert.ok(lines.some((l) => JSON.parse(l).msg.includes('listening on http://127.0.0.1:')));
  assert.ok(lines.some((l) => JSON.parse(l).msg.includes('bad WebSocket handshake')), text);
});
