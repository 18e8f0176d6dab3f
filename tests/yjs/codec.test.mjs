// The C codec (parties/yjs/yjs_codec.c, through yjs_tool) against the npm yjs package as
// the oracle. Random multi-client documents (Text with formats, embeds and
// non-BMP characters, Map, Array, XmlFragment, nested types, deletes) give
// logs of updates plus full-state and partial snapshots; the logs are
// shuffled, merged in random chunks by the codec, and every result must
// decode in yjs to the same document, with byte-identical state vectors.
// Seeded, so a failure names the seed that reproduces it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import * as Y from 'yjs';

const TRIALS = Number(process.env.YJS_TRIALS ?? 120);
const SEED = Number(process.env.YJS_SEED ?? 20260101);

let tool;
let lines;
const waiting = [];

before(() => {
  const bin = process.env.YJS_TOOL;
  if (!bin) throw new Error('YJS_TOOL is not set (run through ctest -L yjs)');
  tool = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  lines = readline.createInterface({ input: tool.stdout });
  lines.on('line', (line) => waiting.shift()(line));
  tool.on('exit', (code, signal) => {
    for (const w of waiting.splice(0)) w(`exited (code ${code}, signal ${signal})`);
  });
});

after(async () => {
  // The tool is an ASan build: a leak or error shows in its exit status.
  const exited = tool.exitCode !== null || tool.signalCode !== null
    ? Promise.resolve([tool.exitCode, tool.signalCode])
    : new Promise((resolve) => tool.once('exit', (code, signal) => resolve([code, signal])));
  tool.stdin.end();
  const [code, signal] = await exited;
  assert.equal(signal, null, `yjs_tool was killed by ${signal}`);
  assert.equal(code, 0, 'yjs_tool exited with an error (see its stderr above)');
});

const hex = (u8) => Buffer.from(u8).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));

function call(cmd, ...args) {
  return new Promise((resolve, reject) => {
    waiting.push((line) => {
      if (line.startsWith('ok')) resolve(unhex(line.slice(3)));
      else reject(new Error(`yjs_tool ${cmd}: ${line}`));
    });
    tool.stdin.write(`${cmd} ${args.map(hex).join(' ')}\n`);
  });
}

/** mulberry32: a small seeded generator, so runs are reproducible. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (arr) => arr[next.int(arr.length)];
  next.shuffle = (arr) => {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = next.int(i + 1);
      [arr[i], arr[j]] = [arr[j], arr[i]];
    }
    return arr;
  };
  return next;
}

const WORDS = ['a', 'bc', 'héllo', 'жук', '日本語', '😀', 'x😀y', '𝄞𝄞', '👩‍👩‍👧', ' ', '\n', 'é😀'];

/** JSON with object keys sorted (a Map's key order depends on arrival). */
function stable(value) {
  if (Array.isArray(value)) return value.map(stable);
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, stable(value[k])]));
  }
  return value;
}

/** A text's delta with adjacent runs of equal attributes joined. */
function runs(text) {
  const out = [];
  for (const op of text.toDelta()) {
    const last = out[out.length - 1];
    if (last && typeof op.insert === 'string' && typeof last.insert === 'string' &&
        JSON.stringify(stable(op.attributes ?? {})) === JSON.stringify(stable(last.attributes ?? {}))) {
      last.insert += op.insert;
    } else {
      out.push({ ...op });
    }
  }
  return out;
}

/** The document's content as one string. */
function content(doc) {
  return JSON.stringify(stable({
    text: runs(doc.getText('text')),
    map: doc.getMap('map').toJSON(),
    array: doc.getArray('array').toJSON(),
    xml: doc.getXmlFragment('xml').toString(),
  }));
}

/**
 * Moves a position in text off the middle of a surrogate pair. yjs cuts
 * such pairs into two U+FFFD, and which of the cut or uncut copies a doc
 * keeps then depends on arrival order, so the random histories stay on
 * code point boundaries; cuts are tested against yjs' own diff below.
 */
function boundary(text, at) {
  let units = '';
  for (const op of text.toDelta()) units += typeof op.insert === 'string' ? op.insert : '_';
  const c = units.charCodeAt(at);
  return c >= 0xdc00 && c <= 0xdfff ? at - 1 : at;
}

function edit(doc, r) {
  const text = doc.getText('text');
  const map = doc.getMap('map');
  const array = doc.getArray('array');
  const xml = doc.getXmlFragment('xml');
  switch (r.int(12)) {
    case 0:
    case 1:
    case 2: {
      // Typing: several single-unit inserts in a row make long items.
      let at = boundary(text, r.int(text.length + 1));
      for (let i = 0, n = 1 + r.int(6); i < n; i++) {
        const w = r.pick(WORDS);
        text.insert(at, w, r.int(5) === 0 ? { bold: true } : undefined);
        at += w.length;
      }
      break;
    }
    case 3:
      if (text.length > 0) {
        const at = boundary(text, r.int(text.length));
        text.delete(at, boundary(text, at + 1 + r.int(Math.min(5, text.length - at))) - at || 2);
      }
      break;
    case 4:
      if (text.length > 0) {
        const at = boundary(text, r.int(text.length));
        const end = boundary(text, at + 1 + r.int(Math.min(4, text.length - at)));
        text.format(at, end - at || 2, { italic: r.int(2) ? true : null });
      }
      break;
    case 5:
      text.insertEmbed(boundary(text, r.int(text.length + 1)), { image: `i${r.int(100)}` });
      break;
    case 6: {
      const key = `k${r.int(6)}`;
      const kind = r.int(5);
      if (kind === 0) map.set(key, r.int(1000));
      else if (kind === 1) map.set(key, { s: r.pick(WORDS), n: [1, 2.5, null, true] });
      else if (kind === 2) map.set(key, new Uint8Array([r.int(256), 1, 2]));
      else if (kind === 3) {
        const t = new Y.Text();
        map.set(key, t);
        t.insert(0, r.pick(WORDS));
      } else map.delete(key);
      break;
    }
    case 7: {
      const at = r.int(array.length + 1);
      if (r.int(3) === 0) {
        const m = new Y.Map();
        array.insert(at, [m]);
        m.set('x', r.pick(WORDS));
      } else {
        array.insert(at, Array.from({ length: 1 + r.int(4) }, () => r.pick([r.int(50), r.pick(WORDS), false, null])));
      }
      break;
    }
    case 8:
      if (array.length > 0) {
        const at = r.int(array.length);
        array.delete(at, 1 + r.int(Math.min(3, array.length - at)));
      }
      break;
    case 9: {
      const at = r.int(xml.length + 1);
      if (r.int(2)) {
        const el = new Y.XmlElement(r.pick(['p', 'h1', 'li']));
        el.setAttribute('class', r.pick(WORDS));
        const t = new Y.XmlText();
        el.insert(0, [t]);
        t.insert(0, r.pick(WORDS));
        xml.insert(at, [el]);
      } else {
        const t = new Y.XmlText();
        xml.insert(at, [t]);
        t.insert(0, r.pick(WORDS));
      }
      break;
    }
    case 10:
      if (xml.length > 0) xml.delete(r.int(xml.length), 1);
      break;
    default: {
      // Edit inside an existing nested text, if any.
      const el = xml.length > 0 ? xml.get(r.int(xml.length)) : null;
      const t = el instanceof Y.XmlElement ? el.get(0) : el;
      if (t instanceof Y.XmlText) t.insert(boundary(t, r.int(t.length + 1)), r.pick(WORDS));
      break;
    }
  }
}

/**
 * A random history: 2-4 clients edit and sometimes sync with each other.
 * Returns {log: every update produced, in order, plus snapshots, reference:
 * the content of all of it, partials: docs that saw only part of it}.
 */
function history(r) {
  const n = 2 + r.int(3);
  const docs = [];
  const log = [];
  for (let i = 0; i < n; i++) {
    const doc = new Y.Doc({ gc: r.int(2) === 0 });
    // Small and large client ids (yjs uses random uint32s), never two
    // docs with one id (that is a broken history, not a test of merging).
    do doc.clientID = r.int(2) ? 1 + r.int(20) : 1 + r.int(0xfffffff0);
    while (docs.some((d) => d.clientID === doc.clientID));
    doc.on('update', (u, origin) => {
      if (origin !== 'sync') log.push(u);
    });
    docs.push(doc);
  }
  const steps = 10 + r.int(40);
  for (let s = 0; s < steps; s++) {
    const doc = r.pick(docs);
    doc.transact(() => {
      for (let k = 0, m = 1 + r.int(3); k < m; k++) edit(doc, r);
    });
    if (r.int(4) === 0) {
      const a = r.pick(docs);
      const b = r.pick(docs);
      Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)), 'sync');
    }
    if (r.int(8) === 0) {
      // A snapshot (with GC structs when gc is on) or a diff that cuts items.
      const a = r.pick(docs);
      const b = r.pick(docs);
      log.push(r.int(2) ? Y.encodeStateAsUpdate(a) : Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)));
    }
  }
  const ref = new Y.Doc();
  for (const u of log) Y.applyUpdate(ref, u);
  return { log, reference: content(ref), refDoc: ref, partials: docs };
}

function applyAll(updates) {
  const doc = new Y.Doc();
  for (const u of updates) Y.applyUpdate(doc, u);
  return doc;
}

async function checkSv(update, what) {
  const ours = await call('sv', update);
  assert.equal(hex(ours), hex(Y.encodeStateVectorFromUpdate(update)), `state vector of ${what}`);
}

async function trial(seed) {
  const r = rng(seed);
  const { log, reference, refDoc, partials } = history(r);
  const shuffled = r.shuffle([...log]);

  // Merge in random chunks, then merge the chunk results.
  const chunks = [];
  for (let i = 0; i < shuffled.length;) {
    const n = 1 + r.int(8);
    chunks.push(shuffled.slice(i, i + n));
    i += n;
  }
  const merged = [];
  for (const chunk of chunks) {
    const m = await call('merge', ...chunk);
    merged.push(m);
    // A partial merge: same state vector as yjs' own merge of the chunk.
    await checkSv(m, 'a chunk merge');
    assert.equal(hex(await call('sv', m)), hex(Y.encodeStateVectorFromUpdate(Y.mergeUpdates(chunk))),
      'state vector of our chunk merge vs yjs mergeUpdates');
    for (const u of chunk) await checkSv(u, 'a logged update');
  }
  const whole = await call('merge', ...r.shuffle(merged));
  await checkSv(whole, 'the whole merge');
  assert.equal(hex(await call('sv', whole)), hex(Y.encodeStateVector(refDoc)), 'whole merge vs the document');
  const doc = applyAll([whole]);
  assert.equal(doc.store.pendingStructs, null, 'nothing pending after the whole merge');
  assert.equal(content(doc), reference, 'content after applying the whole merge');

  // Chunk merges applied one by one, in another order, give it too.
  assert.equal(content(applyAll(r.shuffle([...merged]))), reference, 'content from chunk merges');

  // Merging a merge with its own parts changes nothing (idempotent).
  const again = await call('merge', whole, ...merged.slice(0, 3));
  assert.equal(content(applyAll([again])), reference, 'content after re-merging');
  await checkSv(again, 'a re-merge');

  // Diffs against what partial docs have bring them to the whole document.
  for (const p of partials) {
    const sv = Y.encodeStateVector(p);
    const d = await call('diff', whole, sv);
    const ours = new Y.Doc();
    Y.applyUpdate(ours, Y.encodeStateAsUpdate(p));
    Y.applyUpdate(ours, d);
    // The oracle is yjs' own diff: where the partial doc ends inside a
    // surrogate pair, both leave U+FFFD halves behind.
    const theirs = new Y.Doc();
    Y.applyUpdate(theirs, Y.encodeStateAsUpdate(p));
    Y.applyUpdate(theirs, Y.diffUpdate(whole, sv));
    assert.equal(content(ours), content(theirs), 'partial doc + our diff vs + yjs diff');
    assert.equal(hex(Y.encodeStateVector(ours)), hex(Y.encodeStateVector(refDoc)), 'partial doc + our diff: whole state');
    await checkSv(d, 'a diff');
  }
  // A diff against an arbitrary clock (cutting items, pairs included).
  const sv = Y.decodeStateVector(Y.encodeStateVector(refDoc));
  for (const [client, clock] of sv) sv.set(client, r.int(clock + 1));
  const cut = new Map([...sv].filter(() => r.int(3) > 0));
  const enc = Y.encodeStateVector(cut);
  const ourDiff = await call('diff', whole, enc);
  await checkSv(ourDiff, 'a diff at random clocks');
  assert.equal(content(applyAll([Y.diffUpdate(whole, enc), ourDiff])), content(applyAll([Y.diffUpdate(whole, enc)])),
    'our diff carries what yjs diff carries');
  assert.equal(content(applyAll([whole, ourDiff])), content(applyAll([whole, Y.diffUpdate(whole, enc)])),
    'whole + our diff vs whole + yjs diff');

  // The optional pass over deleted content keeps the document.
  const collected = await call('gc', whole);
  assert.equal(content(applyAll([collected])), reference, 'content after the deleted-content pass');
  assert.ok(collected.length <= whole.length + 16, 'the pass does not grow the update much');
  await checkSv(collected, 'the gc pass');
}

test(`random documents agree with yjs (${TRIALS} trials from seed ${SEED})`, async () => {
  for (let i = 0; i < TRIALS; i++) {
    const seed = SEED + i;
    try {
      await trial(seed);
    } catch (err) {
      err.message = `seed ${seed}: ${err.message}`;
      throw err;
    }
  }
});

test('surrogate pairs cut by a diff become U+FFFD, as in yjs', async () => {
  const doc = new Y.Doc();
  doc.clientID = 7;
  doc.getText('text').insert(0, 'a😀b');
  const update = Y.encodeStateAsUpdate(doc);
  // Clock 2 falls between the two halves of the emoji.
  const sv = Y.encodeStateVector(new Map([[7, 2]]));
  assert.equal(hex(await call('diff', update, sv)), hex(Y.diffUpdate(update, sv)));
});

test('malformed updates are refused, never crash', async () => {
  const doc = new Y.Doc();
  doc.getText('text').insert(0, 'hello');
  doc.getMap('map').set('k', { a: 1 });
  const good = Y.encodeStateAsUpdate(doc);
  await call('check', good);
  const r = rng(99);
  let refused = 0;
  for (let i = 0; i < 300; i++) {
    const bad = new Uint8Array(good);
    for (let k = 0, n = 1 + r.int(3); k < n; k++) bad[r.int(bad.length)] = r.int(256);
    const cut = bad.slice(0, r.int(bad.length + 1));
    for (const u of [bad, cut]) {
      let ok = true;
      await call('check', u).catch(() => { ok = false; refused++; });
      if (ok) {
        // What we accept, yjs must be able to read.
        assert.doesNotThrow(() => Y.encodeStateVectorFromUpdate(u), `accepted ${hex(u)}`);
        await checkSv(u, 'a mutated update we accepted');
      }
    }
  }
  assert.ok(refused > 100, `most mutations are refused (${refused})`);
});
