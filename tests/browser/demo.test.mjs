// The browser demo (web/) in Debian's chromium, driven by playwright-core:
// two pages in one room see each other, chat, and each other's pointer;
// presence follows a page that closes; the chat history is shown again
// after partyd restarts on the same data directory. A screenshot of the
// demo is saved in the build tree (BROWSER_OUT/demo.png).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { buildDemo } from '../../web/build.mjs';
import { startPartyd, stopPartyd, terminatePartyd, uniqueRoom } from '../e2e/helpers.mjs';

/** What the page should show promptly; generous for partyd under ASan. */
const WAIT_MS = 10000;

const outDir = process.env.BROWSER_OUT;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

let browser;
let server;
let dataDir;
const pageErrors = [];

function pageUrl(port, room, name) {
  return `http://127.0.0.1:${port}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`;
}

async function openPage(port, room, name) {
  // One context per person: separate storage, as separate browsers.
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') pageErrors.push(`${name}: console: ${msg.text()}`);
  });
  await page.goto(pageUrl(port, room, name));
  await page.getByRole('status').filter({ hasText: 'connected' }).waitFor();
  return page;
}

function person(page, name) {
  return page.locator('#people li', { hasText: new RegExp(`^${name}$`) });
}

function message(page, text) {
  return page.locator('#messages li', { hasText: text });
}

before(async () => {
  assert.ok(outDir, 'BROWSER_OUT is not set (run this test through ctest)');
  assert.ok(fs.existsSync(chromiumPath), `no chromium at ${chromiumPath} (scripts/deps.sh --test installs it)`);
  const dist = path.join(outDir, 'demo-dist');
  await buildDemo(dist);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-browser-'));
  // The last --data wins over the one startPartyd adds: the room files must
  // outlive the first partyd for the restart below.
  server = await startPartyd(['--data', dataDir, '--static', dist]);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // Chromium's sandbox needs user namespaces, often missing as root in CI.
    args: ['--no-sandbox'],
  });
});

after(async () => {
  await browser?.close();
  await stopPartyd(server);
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

test('two pages chat, see each other and each other\'s pointer; presence follows a closed page; history survives a restart', async () => {
  const room = uniqueRoom('browser');
  const ada = await openPage(server.port, room, 'Ada');
  const bob = await openPage(server.port, room, 'Bob');

  // Presence: each page lists both names.
  for (const page of [ada, bob]) {
    await person(page, 'Ada').waitFor();
    await person(page, 'Bob').waitFor();
  }
  assert.equal(await ada.locator('#people-count').textContent(), '2');

  // Ada sends; Bob sees it (and so does Ada: the echo means it is stored).
  await ada.getByLabel('Message', { exact: true }).fill('hello from Ada');
  await ada.getByRole('button', { name: 'Send' }).click();
  await message(bob, 'Ada: hello from Ada').waitFor();
  await message(ada, 'Ada: hello from Ada').waitFor();

  // Ada's pointer shows on Bob's page, labelled with her name.
  await ada.mouse.move(300, 200);
  await ada.mouse.move(320, 210);
  await bob.locator('#cursors .cursor', { hasText: 'Ada' }).waitFor();

  await bob.screenshot({ path: path.join(outDir, 'demo.png') });

  // Bob leaves: Ada's list drops him.
  await bob.context().close();
  await person(ada, 'Bob').waitFor({ state: 'detached' });
  assert.equal(await ada.locator('#people-count').textContent(), '1');

  // Restart partyd on the same data directory: a newcomer gets the history.
  const stopped = await terminatePartyd(server);
  assert.deepEqual(stopped, { code: 0, signal: null }, `partyd did not stop cleanly:\n${server.stderr()}`);
  fs.rmSync(server.dataDir, { recursive: true, force: true });
  server = await startPartyd(['--data', dataDir, '--static', path.join(outDir, 'demo-dist')]);
  const cy = await openPage(server.port, room, 'Cy');
  await message(cy, 'Ada: hello from Ada').waitFor();
  await person(cy, 'Cy').waitFor();
  assert.equal(await cy.locator('#messages li').count(), 1);

  assert.deepEqual(pageErrors.filter((e) => !/WebSocket connection to .* failed/.test(e)), []);
});
