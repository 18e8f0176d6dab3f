// --allowed-origins in Debian's chromium: a page served from an allowed
// origin opens a WebSocket to partyd and gets its echo; a page from
// another origin (the same host, another port) cannot open one: partyd
// answers its handshake 403, which the page sees as a failed connection.
// Both pages are served by small HTTP servers on loopback, so the Origin
// chromium sends is its own, not one a test wrote.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { startPartyd, stopPartyd, uniqueRoom } from '../e2e/helpers.mjs';

const WAIT_MS = 10000;
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

let browser;
let server;
const sites = [];

/** An HTTP server on 127.0.0.1 serving one empty page: its origin. */
async function startSite() {
  const site = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>site</title><p>site</p>');
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  sites.push(site);
  return `http://127.0.0.1:${site.address().port}`;
}

/** Opens a page of origin and, from it, a WebSocket to url: "echo:<text>"
 * once a message came back, "close:<code>" if it closed first. */
async function connectFrom(origin, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(origin + '/');
  const outcome = await page.evaluate((wsUrl) => new Promise((resolve) => {
    const ws = new WebSocket(wsUrl);
    ws.onopen = () => ws.send('from the page');
    ws.onmessage = (e) => { resolve('echo:' + e.data); ws.close(); };
    ws.onclose = (e) => resolve('close:' + e.code);
  }), url);
  await context.close();
  return outcome;
}

async function originRefusals() {
  const res = await fetch(`http://127.0.0.1:${server.port}/_partyd/metrics`);
  const text = await res.text();
  const m = text.match(/^partyd_connections_origin_refused_total (\d+)$/m);
  assert.ok(m, 'no partyd_connections_origin_refused_total in /_partyd/metrics');
  return Number(m[1]);
}

let allowed;
let other;

before(async () => {
  assert.ok(fs.existsSync(chromiumPath), `no chromium at ${chromiumPath} (scripts/deps.sh --test installs it)`);
  allowed = await startSite();
  other = await startSite();
  server = await startPartyd(['--allowed-origins', allowed]);
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  await stopPartyd(server);
  for (const site of sites) site.close();
});

test('a page from an allowed origin opens a WebSocket and gets its echo', async () => {
  const url = `ws://127.0.0.1:${server.port}/parties/echo/${uniqueRoom('origin-ok')}`;
  assert.equal(await connectFrom(allowed, url), 'echo:from the page');
});

test('a page from another origin cannot open a WebSocket: partyd refuses its handshake', async () => {
  const before = await originRefusals();
  const url = `ws://127.0.0.1:${server.port}/parties/echo/${uniqueRoom('origin-no')}`;
  // A refused handshake is a connection that never opened: 1006 to the page.
  assert.equal(await connectFrom(other, url), 'close:1006');
  assert.equal(await originRefusals(), before + 1);
});
