// docs/getting-started.md, followed as written: the demo room from a
// terminal (step 3), and the first party (step 5) taken from the document
// itself, built outside the tree with the document's cc command, loaded
// with --party, driven with `partyd connect --id ada` and compared with
// the transcript the document shows; its count survives a restart.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startPartyd, stopPartyd, terminatePartyd, TIMEOUT_MS, uniqueRoom, withTimeout } from './helpers.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const doc = fs.readFileSync(path.join(repo, 'docs', 'getting-started.md'), 'utf8');
let workDir;
let dataDir;
let server;

/**
 * The fenced blocks of the document: {at (offset of the fence), lang, text}.
 * The info string's tag (tests/docs/doctest.mjs) follows the language.
 */
function fencedBlocks() {
  const blocks = [];
  const re = /^```(\w*)[^\n]*\n([\s\S]*?)^```$/gm;
  for (let m; (m = re.exec(doc)) !== null;) blocks.push({ at: m.index, lang: m[1], text: m[2] });
  return blocks;
}

/** The first fenced block of language lang ('' for none) after the text marker. */
function blockAfter(marker, lang) {
  const at = doc.indexOf(marker);
  assert.ok(at >= 0, `getting-started.md no longer contains ${JSON.stringify(marker)}`);
  const block = fencedBlocks().find((b) => b.at > at && b.lang === lang);
  assert.ok(block, `no \`\`\`${lang} block after ${JSON.stringify(marker)}`);
  return block.text;
}

/** Runs `partyd connect` with args; resolves stdout lines as they come. */
function connect(args) {
  const proc = spawn(process.env.PARTYD, ['connect', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = new Set();
  let partial = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (chunk) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop();
    lines.push(...parts);
    for (const w of [...waiters]) w();
  });
  proc.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    lines,
    /** Waits until n lines have arrived; returns them all. */
    async until(n) {
      let waiter;
      const p = new Promise((resolve) => {
        waiter = () => lines.length >= n && resolve(lines);
        waiters.add(waiter);
        waiter();
      });
      return withTimeout(p, TIMEOUT_MS, () => `waiting for ${n} lines; got ${JSON.stringify(lines)}; stderr ${stderr}`)
        .finally(() => waiters.delete(waiter));
    },
    async end() {
      proc.stdin.end();
      const code = await withTimeout(exited, TIMEOUT_MS, 'partyd connect did not exit');
      assert.equal(code, 0, stderr);
    },
  };
}

before(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-getting-started-'));
  dataDir = path.join(workDir, 'data');
  fs.writeFileSync(path.join(workDir, 'hello.c'), blockAfter('Save it as\n`hello.c`', 'c'));
  // The document's command, with include/ made absolute.
  const build = blockAfter('Build it against the header alone', 'sh').trim();
  assert.equal(build, 'cc -shared -fPIC -I include -o hello.so hello.c');
  execFileSync('cc', ['-shared', '-fPIC', '-I', path.join(repo, 'include'), '-o', 'hello.so', 'hello.c'],
    { cwd: workDir, stdio: 'pipe' });
  server = await startPartyd(['--data', dataDir, '--party', 'hello=' + path.join(workDir, 'hello.so')]);
});

after(async () => {
  await stopPartyd(server);
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

test('step 3: the two lines typed into partyd connect join the demo room and chat', async () => {
  const typed = blockAfter('Type these two lines', 'text').trim().split('\n');
  const room = uniqueRoom('lobby');
  const cli = connect([`ws://127.0.0.1:${server.port}/parties/demo/${room}`]);
  const [welcome] = await cli.until(1);
  assert.equal(JSON.parse(welcome).type, 'welcome');
  cli.proc.stdin.write(typed.join('\n') + '\n');
  const lines = await cli.until(3);
  assert.deepEqual(JSON.parse(lines[1]), { type: 'join', id: JSON.parse(welcome).id, name: 'terminal' });
  const chat = JSON.parse(lines[2]);
  assert.equal(chat.type, 'chat');
  assert.equal(chat.message.text, 'hello from a terminal');
  await cli.end();
});

test('step 5: hello.c answers as the transcript shows, and its count survives a restart', async () => {
  const transcript = blockAfter('Connect with an id of your choice', 'text').trim().split('\n');
  const command = blockAfter('Connect with an id of your choice', 'sh').trim();
  assert.equal(command, 'build/release/partyd connect --id ada ws://127.0.0.1:1999/parties/hello/room1');
  const typed = ['hi', 'again'];
  const fromRoom = transcript.filter((line) => !typed.includes(line));

  const cli = connect(['--id', 'ada', `ws://127.0.0.1:${server.port}/parties/hello/room1`]);
  await cli.until(1);
  cli.proc.stdin.write('hi\n');
  await cli.until(2);
  cli.proc.stdin.write('again\n');
  assert.deepEqual(await cli.until(3), fromRoom);
  await cli.end();

  // "stop partyd, start it again, and the count goes on from 2".
  assert.deepEqual(await terminatePartyd(server), { code: 0, signal: null });
  fs.rmSync(server.dataDir, { recursive: true, force: true });
  server = await startPartyd(['--data', dataDir, '--party', 'hello=' + path.join(workDir, 'hello.so')]);
  const again = connect(['--id', 'ada', `ws://127.0.0.1:${server.port}/parties/hello/room1`]);
  await again.until(1);
  again.proc.stdin.write('still here\n');
  assert.equal((await again.until(2))[1], '#3 ada: still here');
  await again.end();
});
