// The README's "write your own party" example, taken from README.md itself
// (tests/docs/doctest.mjs compiles it and runs its cc line; this runs it),
// built as a shared object outside the tree against include/party.h alone
// (plain `cc -shared -fPIC -I include`, as the README says), loaded into
// partyd with --party, and used by a real client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { Inbox, startPartyd, stopPartyd, uniqueRoom, waitEvent } from './helpers.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let server;
let workDir;

const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');

/** The README's ```c block saved as tally.c (its info string says file=tally.c). */
function readmeExample() {
  const block = readme.match(/^```c [^\n]*\bfile=tally\.c\b[^\n]*\n([\s\S]*?)^```$/m);
  assert.ok(block, 'README.md has a ```c block with file=tally.c');
  return block[1];
}

before(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-readme-'));
  fs.writeFileSync(path.join(workDir, 'tally.c'), readmeExample());
  // The README's commands, with include/ and the build's partyd made absolute.
  assert.ok(readme.includes('\ncc -shared -fPIC -I include -o tally.so tally.c\n'), 'the README builds tally.so');
  assert.ok(readme.includes('\nbuild/release/partyd --party tally=./tally.so\n'), 'the README loads tally.so');
  execFileSync('cc', ['-shared', '-fPIC', '-I', path.join(repo, 'include'), '-o', 'tally.so',
    'tally.c'], { cwd: workDir, stdio: 'pipe' });
  server = await startPartyd(['--party', 'tally=' + path.join(workDir, 'tally.so')]);
});

after(async () => {
  await stopPartyd(server);
  fs.rmSync(workDir, { recursive: true, force: true });
});

test('the README example party builds outside the tree, loads and counts messages', async () => {
  const room = uniqueRoom('readme');
  const a = new WebSocket(`ws://127.0.0.1:${server.port}/parties/tally/${room}`);
  const b = new WebSocket(`ws://127.0.0.1:${server.port}/parties/tally/${room}`);
  const inboxA = new Inbox(a, 'a');
  const inboxB = new Inbox(b, 'b');
  await Promise.all([waitEvent(a, 'open'), waitEvent(b, 'open')]);
  a.send('one');
  assert.equal(await inboxA.nextText(), `${room}: message 1`);
  assert.equal(await inboxB.nextText(), `${room}: message 1`);
  b.send('two');
  assert.equal(await inboxA.nextText(), `${room}: message 2`);
  assert.equal(await inboxB.nextText(), `${room}: message 2`);
  a.close(1000);
  b.close(1000);
  await Promise.all([inboxA.closed(), inboxB.closed()]);
});
