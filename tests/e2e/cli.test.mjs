// The client subcommands of the partyd binary against a running partyd:
// `partyd connect URL` (stdin lines out, messages in, binary as hex, --id,
// --header, the close code as exit status) and `partyd rooms` (the admin
// listing, with and without the token).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, test } from 'node:test';

import { startPartyd, stopPartyd, terminatePartyd, TIMEOUT_MS, uniqueRoom, withTimeout } from './helpers.mjs';

const TOKEN = 'cli-test-token';
let server;

before(async () => {
  server = await startPartyd(['--admin-token', TOKEN]);
});

after(async () => {
  await stopPartyd(server);
});

/**
 * Runs `partyd <args>` with piped stdio. Returns {proc, stdout(), stderr(),
 * waitStdout(re), waitStderr(re), exit()}; exit() resolves with the status (fails the test
 * if it does not come within TIMEOUT_MS).
 */
function runPartyd(args, env = {}) {
  const proc = spawn(process.env.PARTYD, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PARTYD_ADMIN_TOKEN: '', ...env },
  });
  let out = '';
  let err = '';
  const waiters = new Set();
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (chunk) => {
    out += chunk;
    for (const w of [...waiters]) w();
  });
  proc.stderr.on('data', (chunk) => {
    err += chunk;
    for (const w of [...waiters]) w();
  });
  proc.stdin.on('error', () => {}); // the client may exit before reading all
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const describe = () => `stdout: ${JSON.stringify(out)}; stderr: ${JSON.stringify(err)}`;
  const waitFor = (name, text, re) => {
    let waiter;
    const p = new Promise((resolve) => {
      waiter = () => {
        const m = re.exec(text());
        if (m) resolve(m);
      };
      waiters.add(waiter);
      waiter();
    });
    return withTimeout(p, TIMEOUT_MS, () => `partyd ${args[0]}: no ${re} on ${name}; ${describe()}`)
      .finally(() => waiters.delete(waiter));
  };
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    waitStdout: (re) => waitFor('stdout', () => out, re),
    waitStderr: (re) => waitFor('stderr', () => err, re),
    async exit() {
      const { code, signal } = await withTimeout(exited, TIMEOUT_MS,
        () => `partyd ${args[0]} did not exit; ${describe()}`).catch((e) => {
        proc.kill('SIGKILL');
        throw e;
      });
      assert.equal(signal, null, `partyd ${args[0]} died of ${signal}; ${describe()}`);
      return code;
    },
  };
}

function url(party, room, query = '') {
  return `ws://127.0.0.1:${server.port}/parties/${party}/${room}${query}`;
}

test('connect: lines go out, the echo comes back on stdout, end of input closes with 1000 (status 0)', async () => {
  const cli = runPartyd(['connect', url('echo', uniqueRoom())]);
  cli.proc.stdin.write('hello, echo\n');
  await cli.waitStdout(/^hello, echo\n/);
  cli.proc.stdin.end('second line\r\nno newline at the end');
  assert.equal(await cli.exit(), 0, cli.stderr());
  assert.equal(cli.stdout(), 'hello, echo\nsecond line\nno newline at the end\n');
});

test('connect: --binary sends hex lines as binary messages; binary received is printed as hex', async () => {
  const cli = runPartyd(['connect', '--binary', url('echo', uniqueRoom())]);
  cli.proc.stdin.end('00ff10 7f\nzz\n');
  assert.equal(await cli.exit(), 0, cli.stderr());
  assert.equal(cli.stdout(), '00ff107f\n');
  assert.match(cli.stderr(), /not an even number of hex digits; line not sent/);
});

test('connect: the server\'s close code becomes the exit status (4001 -> 101), its reason goes to stderr', async () => {
  const cli = runPartyd(['connect', url('probe', uniqueRoom())]);
  await cli.waitStdout(/^hello:/);
  cli.proc.stdin.write('close:4001:done here\n'); // stdin stays open: the server closes
  assert.equal(await cli.exit(), 101, cli.stderr());
  assert.match(cli.stderr(), /closed by the server: 4001 done here/);
});

test('connect: a server shutting down (1001) gives status 11', async () => {
  const own = await startPartyd();
  try {
    const cli = runPartyd(['connect', `ws://127.0.0.1:${own.port}/parties/echo/${uniqueRoom()}`]);
    cli.proc.stdin.write('ping\n');
    await cli.waitStdout(/^ping\n/);
    const stopping = terminatePartyd(own);
    assert.equal(await cli.exit(), 11, cli.stderr());
    assert.deepEqual(await stopping, { code: 0, signal: null });
  } finally {
    await stopPartyd(own);
  }
});

test('connect: --id sets the connection id and --header adds request headers', async () => {
  const room = uniqueRoom();
  const cli = runPartyd(['connect', '--id', 'cli user/1', '--header', 'X-Probe-Hook: from-cli',
    url('probe', room)]);
  const [greeting] = await cli.waitStdout(/^hello:[^\n]*\n/);
  assert.equal(greeting.split(':')[1], 'cli user/1');
  await cli.waitStdout(/^hello:[^\n]*\nhook:from-cli\n/);
  cli.proc.stdin.end();
  assert.equal(await cli.exit(), 0, cli.stderr());
});

test('connect: a refused handshake exits 1 with the status; bad arguments exit 2', async () => {
  const refused = runPartyd(['connect', url('no-such-party', 'r')]);
  refused.proc.stdin.end();
  assert.equal(await refused.exit(), 1);
  assert.match(refused.stderr(), /refused the WebSocket: HTTP\/1\.1 400/);

  const longHost = 'h'.repeat(300);
  for (const args of [['connect'], ['connect', 'wss://127.0.0.1/x'], ['connect', '--header', 'no colon', url('echo', 'r')],
    ['connect', `ws://${longHost}/x`], ['connect', `ws://[${longHost}]:1/x`]]) {
    const bad = runPartyd(args);
    bad.proc.stdin.end();
    assert.equal(await bad.exit(), 2, `${args.join(' ')}: ${bad.stderr()}`);
    assert.notEqual(bad.stderr(), '');
  }
});

test('rooms: lists the rooms in memory with the token; refused without it', async () => {
  const room = uniqueRoom('listed');
  const holder = runPartyd(['connect', url('chat', room)]);
  await holder.waitStderr(/connected to/);

  const table = runPartyd(['rooms', '--port', String(server.port), '--admin-token', TOKEN]);
  assert.equal(await table.exit(), 0, table.stderr());
  assert.match(table.stdout(), /^PARTY\s+ROOM\s+CONNECTIONS\s+STATUS\s+ID\n/);
  assert.match(table.stdout(), new RegExp(`^chat\\s+${room}\\s+1\\s+awake\\s+[0-9a-f]{64}$`, 'm'));

  const json = runPartyd(['rooms', '--port', String(server.port), '--json'], { PARTYD_ADMIN_TOKEN: TOKEN });
  assert.equal(await json.exit(), 0, json.stderr());
  const listed = JSON.parse(json.stdout()).rooms.find((r) => r.name === room);
  assert.deepEqual({ party: listed.party, connections: listed.connections }, { party: 'chat', connections: 1 });

  // No token at all (PARTYD_ADMIN_TOKEN is empty): said before asking.
  const without = runPartyd(['rooms', '--port', String(server.port)]);
  assert.equal(await without.exit(), 2);
  assert.equal(without.stderr(), 'partyd rooms: no token given (use --admin-token or PARTYD_ADMIN_TOKEN)\n');
  assert.equal(without.stdout(), '');

  const wrong = runPartyd(['rooms', '--port', String(server.port), '--admin-token', 'nope']);
  assert.equal(await wrong.exit(), 1);
  assert.match(wrong.stderr(), /401/);

  holder.proc.stdin.end();
  assert.equal(await holder.exit(), 0, holder.stderr());
});

test('rooms: long names are cut short in the table, aligned; --json has them whole', async () => {
  const long = `${uniqueRoom('long')}-${'n'.repeat(60)}`;
  const short = uniqueRoom('short');
  const holders = [long, short].map((room) => runPartyd(['connect', url('chat', room)]));
  for (const h of holders) await h.waitStderr(/connected to/);

  const table = runPartyd(['rooms', '--port', String(server.port), '--admin-token', TOKEN]);
  assert.equal(await table.exit(), 0, table.stderr());
  const lines = table.stdout().split('\n');
  const header = lines[0];
  const roomAt = header.indexOf('ROOM');
  const connectionsAt = header.indexOf('CONNECTIONS');
  // The longest name sets the column, up to 40 characters.
  assert.equal(connectionsAt - roomAt, 40 + 2, header);
  const longRow = lines.find((l) => l.startsWith('chat ') && l.slice(roomAt).startsWith(long.slice(0, 39)));
  const shortRow = lines.find((l) => l.startsWith('chat ') && l.slice(roomAt).startsWith(`${short} `));
  assert.ok(longRow && shortRow, table.stdout());
  // 39 characters of the name and an ellipsis fill the column.
  assert.equal(longRow.slice(roomAt, connectionsAt), `${long.slice(0, 39)}\u2026  `);
  // The columns after ROOM start at the same place on every row.
  for (const row of [longRow, shortRow]) {
    assert.equal(row.slice(connectionsAt, connectionsAt + 11), '          1', `misaligned: ${row}`);
  }

  const json = runPartyd(['rooms', '--port', String(server.port), '--json', '--admin-token', TOKEN]);
  assert.equal(await json.exit(), 0, json.stderr());
  assert.ok(JSON.parse(json.stdout()).rooms.some((r) => r.name === long));

  for (const h of holders) {
    h.proc.stdin.end();
    assert.equal(await h.exit(), 0, h.stderr());
  }
});

test('rooms: a server that answers with TLS is named as such', async () => {
  // A TLS server answers plain HTTP with an alert record (0x15), or a
  // handshake: not HTTP.
  const tlsLike = net.createServer((s) => {
    s.once('data', () => s.end(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])));
    s.on('error', () => {});
  });
  await new Promise((resolve) => tlsLike.listen(0, '127.0.0.1', resolve));
  try {
    const cli = runPartyd(['rooms', '--port', String(tlsLike.address().port), '--admin-token', TOKEN]);
    assert.equal(await cli.exit(), 1);
    assert.match(cli.stderr(), /speaks TLS \(https\); partyd rooms speaks plain HTTP only/);
  } finally {
    await new Promise((resolve) => tlsLike.close(resolve));
  }
});

test('rooms: a partyd without --admin-token has no listing (404, status 1)', async () => {
  const own = await startPartyd();
  try {
    const cli = runPartyd(['rooms', '--port', String(own.port), '--admin-token', TOKEN]);
    assert.equal(await cli.exit(), 1);
    assert.match(cli.stderr(), /no rooms listing \(404\): start partyd with --admin-token/);
  } finally {
    await stopPartyd(own);
  }
});
