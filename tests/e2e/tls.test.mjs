// https and wss served by partyd itself (--tls-cert/--tls-key), with a
// self-signed certificate made here by the openssl command: node's https
// and the ws client verify it against that certificate as their CA.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import WS from 'ws';
import {
  Inbox, TIMEOUT_MS, startPartyd, stopPartyd, uniqueRoom, waitEvent, waitStderr, withTimeout,
} from './helpers.mjs';

let server;
let certDir;
let ca;
const sockets = new Set();

before(async () => {
  certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-tls-'));
  const cert = path.join(certDir, 'cert.pem');
  const key = path.join(certDir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  ca = fs.readFileSync(cert);
  server = await startPartyd(['--tls-cert', cert, '--tls-key', key]);
});

after(async () => {
  for (const s of sockets) s.terminate();
  await stopPartyd(server);
  fs.rmSync(certDir, { recursive: true, force: true });
});

function httpsRequest(method, urlPath, body) {
  const p = new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: server.port, method, path: urlPath, ca, agent: false,
      headers: body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {},
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
  return withTimeout(p, TIMEOUT_MS, `${method} ${urlPath} over https`);
}

async function openWss(room, query = '') {
  const ws = new WS(`wss://127.0.0.1:${server.port}/parties/probe/${room}${query}`, { ca });
  sockets.add(ws);
  const inbox = new Inbox(ws, room);
  await waitEvent(ws, 'open', TIMEOUT_MS, 'wss open');
  return { ws, inbox };
}

/** A raw TCP connection that sends bytes and waits for the server to close it. */
function sendRawAndWaitClose(bytes) {
  return withTimeout(new Promise((resolve, reject) => {
    const s = net.connect(server.port, '127.0.0.1', () => s.write(bytes));
    let received = Buffer.alloc(0);
    s.on('data', (d) => { received = Buffer.concat([received, d]); });
    s.on('close', () => resolve(received));
    s.on('error', () => {}); // a reset counts as closed too
    s.on('timeout', () => reject(new Error('no close')));
  }), TIMEOUT_MS, 'the server to close a non-TLS connection');
}

describe('https', () => {
  it('GET and POST reach the room over a verified TLS connection', async () => {
    const room = uniqueRoom('tls-http');
    const get = await httpsRequest('GET', `/parties/probe/${room}`);
    assert.equal(get.status, 200);
    assert.equal(JSON.parse(get.body.toString()).name, room);
    const payload = 'x'.repeat(200000);
    const post = await httpsRequest('POST', `/parties/probe/${room}`, payload);
    assert.equal(post.status, 201);
    assert.equal(post.body.toString(), payload);
  });

  it('negotiates TLS 1.2 or later with the certificate given', async () => {
    const info = await withTimeout(new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, ca, servername: undefined }, () => {
        resolve({ protocol: s.getProtocol(), subject: s.getPeerCertificate().subject.CN });
        s.end();
      });
      s.on('error', reject);
    }), TIMEOUT_MS, 'TLS handshake');
    assert.match(info.protocol, /^TLSv1\.[23]$/);
    assert.equal(info.subject, '127.0.0.1');
  });
});

describe('wss', () => {
  it('messages both ways, a large one, and a clean close', async () => {
    const room = uniqueRoom('tls-ws');
    const { ws, inbox } = await openWss(room, '?_pk=tls-client');
    assert.match(await inbox.nextText(), new RegExp(`^hello:tls-client:${room}:`));
    ws.send('ping over tls');
    assert.equal(await inbox.nextText(), 'echo:ping over tls');
    // A reply far larger than one TLS record and the encryption step.
    ws.send('big:1000000');
    const big = await inbox.nextText(10000);
    assert.equal(big.length, 1000000);
    assert.ok(/^x+$/.test(big));
    const binary = Buffer.from([0, 1, 2, 255]);
    ws.send(binary);
    const echoed = await inbox.next();
    assert.ok(echoed.binary);
    assert.deepEqual(Buffer.from(echoed.data), binary);
    ws.close(4001, 'done');
    const closed = await inbox.closed();
    assert.equal(closed.code, 4001);
    assert.equal(closed.reason, 'done');
  });

  it('broadcasts reach several TLS connections', async () => {
    const room = uniqueRoom('tls-bcast');
    const a = await openWss(room, '?_pk=a');
    const b = await openWss(room, '?_pk=b');
    await a.inbox.nextText();
    await b.inbox.nextText();
    a.ws.send('broadcast:to everyone');
    assert.equal(await b.inbox.nextText(), 'to everyone');
    a.ws.close();
    b.ws.close();
    await a.inbox.closed();
    await b.inbox.closed();
  });
});

describe('TLS over several event loops', () => {
  it('a TLS session moves with its socket to the room\'s loop, keep-alive requests hop between loops', async () => {
    const cert = path.join(certDir, 'cert.pem');
    const key = path.join(certDir, 'key.pem');
    const four = await startPartyd(['--tls-cert', cert, '--tls-key', key, '--threads', '4']);
    try {
      await waitStderr(four, /4 event loops/);
      // Sixteen rooms spread over four loops: most handshakes are handed over.
      for (let i = 0; i < 16; i++) {
        const room = uniqueRoom(`tls-loops-${i}`);
        const ws = new WS(`wss://127.0.0.1:${four.port}/parties/probe/${room}?_pk=c${i}`, { ca });
        sockets.add(ws);
        const inbox = new Inbox(ws, room);
        await waitEvent(ws, 'open', TIMEOUT_MS, 'wss open');
        assert.match(await inbox.nextText(), new RegExp(`^hello:c${i}:${room}:`));
        ws.send(`ping ${i}`);
        assert.equal(await inbox.nextText(), `echo:ping ${i}`);
        ws.close(4000 + i, 'bye');
        assert.equal((await inbox.closed()).code, 4000 + i);
      }
      // Pipelined requests in separate TLS records, read from the socket
      // together: the records behind the first request travel inside the
      // TLS state to the room's loop and are answered there, in order.
      const rooms = [0, 1, 2, 3, 4, 5].map((i) => uniqueRoom(`tls-pipe-${i}`));
      const answers = await withTimeout(new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: four.port, ca }, () => {
          s.cork();
          rooms.forEach((room, i) => s.write(`GET /parties/probe/${room} HTTP/1.1\r\nHost: x\r\n${i === rooms.length - 1 ? 'Connection: close\r\n' : ''}\r\n`));
          s.uncork();
        });
        let text = '';
        s.on('data', (d) => { text += d.toString('latin1'); });
        s.on('end', () => resolve(text));
        s.on('error', reject);
      }), TIMEOUT_MS, 'pipelined requests over TLS');
      const names = [...answers.matchAll(/"name":"([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual(names, rooms);
      // One keep-alive TLS connection asking rooms on different loops in turn.
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
      try {
        for (let i = 0; i < 16; i++) {
          const room = uniqueRoom(`tls-keepalive-${i}`);
          const res = await withTimeout(new Promise((resolve, reject) => {
            const req = https.request({ host: '127.0.0.1', port: four.port, path: `/parties/probe/${room}`, agent }, (r) => {
              const chunks = [];
              r.on('data', (c) => chunks.push(c));
              r.on('end', () => resolve({ status: r.statusCode, body: Buffer.concat(chunks).toString(), reused: req.reusedSocket }));
              r.on('error', reject);
            });
            req.on('error', reject);
            req.end();
          }), TIMEOUT_MS, `GET ${room}`);
          assert.equal(res.status, 200);
          assert.equal(JSON.parse(res.body).name, room);
          if (i > 0) assert.ok(res.reused, 'the keep-alive connection was reused');
        }
      } finally {
        agent.destroy();
      }
    } finally {
      await stopPartyd(four);
    }
  });
});

describe('TLS hand-offs carry the request as parsed', () => {
  it('chunked bodies reach rooms on other loops whole, and each request is parsed once', async () => {
    const cert = path.join(certDir, 'cert.pem');
    const key = path.join(certDir, 'key.pem');
    const four = await startPartyd(['--tls-cert', cert, '--tls-key', key, '--threads', '4']);
    /** partyd_connections_requests_total (the scrape counts itself). */
    const requestsParsed = async () => {
      const res = await withTimeout(new Promise((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: four.port, path: '/_partyd/metrics', ca, agent: false }, (r) => {
          let text = '';
          r.on('data', (c) => { text += c; });
          r.on('end', () => resolve(text));
          r.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      }), TIMEOUT_MS, 'metrics over https');
      const m = /\npartyd_connections_requests_total (\d+)\n/.exec(res);
      assert.ok(m, res);
      return Number(m[1]);
    };
    try {
      await waitStderr(four, /4 event loops/);
      const before = await requestsParsed();
      // Eight rooms over four loops: most requests are handed over, with the
      // records read behind them inside the TLS state.
      const n = 8;
      for (let i = 0; i < n; i++) {
        const room = uniqueRoom(`tls-chunked-${i}`);
        const answers = await withTimeout(new Promise((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: four.port, ca }, () => {
            s.write(`POST /parties/probe/${room} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n` +
              `5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld${i}\r\n0\r\nX-Trailer: t\r\n\r\n` +
              `GET /parties/probe/${room}-next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
          });
          let text = '';
          s.on('data', (d) => { text += d.toString('latin1'); });
          s.on('end', () => resolve(text));
          s.on('error', reject);
        }), TIMEOUT_MS, `chunked POST to ${room}`);
        assert.match(answers, /^HTTP\/1\.1 201 /);
        assert.ok(answers.includes(`\r\n\r\nhello world${i}HTTP/1.1 200 `), answers);
        assert.ok(answers.includes(`"name":"${room}-next"`), answers);
      }
      // Two requests a connection, and the second scrape.
      assert.equal(await requestsParsed() - before, 2 * n + 1);
    } finally {
      await stopPartyd(four);
    }
  });
});

describe('slow readers over TLS', () => {
  it('one that stops reading gets every reply, whole and in order, when it reads again', async () => {
    // 16 MB asked: more than a loopback socket buffers (4 MiB by default),
    // so ciphertext waits in partyd for the socket to take it.
    const room = uniqueRoom('tls-pause');
    const { ws, inbox } = await openWss(room);
    await inbox.nextText();
    ws._socket.pause();
    const sizes = [1000000, 17];
    for (let i = 0; i < 15; i++) sizes.push(1000000);
    for (const n of sizes) ws.send(`big:${n}`);
    ws.send('after');
    await new Promise((resolve) => { setTimeout(resolve, 300); });
    ws._socket.resume();
    for (const n of sizes) {
      const reply = await inbox.nextText(20000);
      assert.equal(reply.length, n);
      assert.ok(/^x+$/.test(reply));
    }
    assert.equal(await inbox.nextText(), 'echo:after');
    ws.close();
    await inbox.closed();
  });

  it('are dropped at send_queue_bytes like plaintext ones', async () => {
    const cert = path.join(certDir, 'cert.pem');
    const key = path.join(certDir, 'key.pem');
    const small = await startPartyd(['--tls-cert', cert, '--tls-key', key, '--send-queue-bytes', '1M']);
    try {
      const ws = new WS(`wss://127.0.0.1:${small.port}/parties/probe/${uniqueRoom('tls-slow')}`, { ca });
      sockets.add(ws);
      const inbox = new Inbox(ws, 'slow');
      await waitEvent(ws, 'open', TIMEOUT_MS, 'wss open');
      await inbox.nextText();
      ws._socket.pause(); // stop reading: the kernel buffers fill, then partyd's queue
      for (let i = 0; i < 40; i++) ws.send('big:500000');
      await waitStderr(small, /send queue would exceed send_queue_bytes/, 10000);
      ws._socket.resume();
      const closed = await inbox.closed(10000);
      assert.equal(closed.code, 1006, 'dropped without a close handshake');
    } finally {
      await stopPartyd(small);
    }
  });
});

describe('bad clients on the TLS port', () => {
  it('garbage bytes are dropped, and the server goes on serving', async () => {
    const before = await tlsErrors();
    const garbage = await sendRawAndWaitClose(Buffer.from('\x16\x03\x01\x00\x05garbage-not-a-hello\r\n\r\n', 'latin1'));
    // At most a TLS alert record comes back, never an HTTP answer.
    assert.ok(garbage.length === 0 || garbage[0] === 0x15, `unexpected reply ${garbage.toString('hex')}`);
    await waitStderr(server, /tls: handshake failed/);
    const after = await httpsRequest('GET', `/parties/probe/${uniqueRoom('tls-after')}`);
    assert.equal(after.status, 200);
    assert.ok(await tlsErrors() >= before + 1, 'the refused handshake is counted');
  });

  it('plain HTTP gets a plain 400 saying the port speaks TLS, then the close', async () => {
    const before = await tlsErrors();
    const plain = (await sendRawAndWaitClose('GET /parties/probe/x HTTP/1.1\r\nHost: x\r\n\r\n')).toString('latin1');
    assert.match(plain, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(plain, /\r\nConnection: close\r\n/i);
    assert.ok(plain.endsWith('\r\n\r\nthis port speaks TLS (https/wss)\n'), plain);
    // A method cut short by the first read is plain HTTP too.
    const cut = (await sendRawAndWaitClose('POS')).toString('latin1');
    assert.match(cut, /^HTTP\/1\.1 400 Bad Request\r\n/);
    await waitStderr(server, /tls: plain HTTP on the TLS port; answered 400/);
    const after = await httpsRequest('GET', `/parties/probe/${uniqueRoom('tls-after')}`);
    assert.equal(after.status, 200);
    assert.ok(await tlsErrors() >= before + 2, 'both are counted as TLS errors');
  });

  it('partyd rooms says the server speaks TLS', async () => {
    const proc = spawn(process.env.PARTYD, ['rooms', '--port', String(server.port), '--admin-token', 't'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => { err += chunk; });
    const [code] = await withTimeout(once(proc, 'exit'), TIMEOUT_MS, 'partyd rooms to exit');
    assert.equal(code, 1);
    assert.match(err, /^partyd rooms: the server at 127\.0\.0\.1:\d+ speaks TLS \(https\); partyd rooms speaks plain HTTP only/);
  });
});

// Last: the upgrade replaces the process this file started.
describe('an upgrade (SIGUSR2)', () => {
  it('closes TLS WebSockets with 1012, counts them, and the new process serves wss', async () => {
    const { ws } = await openWss(uniqueRoom('upgrade'));
    const closed = waitEvent(ws, 'close', 60000, 'the 1012 close');
    process.kill(server.pid, 'SIGUSR2');
    const [code] = await closed;
    assert.equal(code, 1012);
    await waitStderr(server, /upgrade: adopted \d+ connections in [\d.]+ ms; serving \(pid \d+\)/, 60000);
    const newPid = Number(/serving \(pid (\d+)\)/.exec(server.stderr())[1]);
    const ended = new Promise((resolve) => server.proc.stderr.once('end', resolve));
    try {
      const again = await openWss(uniqueRoom('after'));
      again.ws.send('hi');
      assert.match(await again.inbox.nextText(), /^(hello|echo):/);
      const metrics = (await httpsRequest('GET', '/_partyd/metrics')).body.toString();
      assert.match(metrics, /^partyd_runtime_upgrade_tls_closed_total [1-9]\d*$/m);
      assert.match(metrics, new RegExp(`^partyd_runtime_process_id ${newPid}$`, 'm'));
      again.ws.terminate();
    } finally {
      process.kill(newPid, 'SIGTERM');
      await withTimeout(ended, 60000, 'the new process to exit');
    }
    assert.doesNotMatch(server.stderr(), /AddressSanitizer|LeakSanitizer|runtime error/);
  });
});

async function tlsErrors() {
  const metrics = await httpsRequest('GET', '/_partyd/metrics');
  const m = /^partyd_runtime_errors_total\{kind="tls"\} (\d+)$/m.exec(metrics.body.toString());
  assert.ok(m, 'the TLS error count is in the metrics');
  return Number(m[1]);
}
