// The docs cannot drift: every fenced block of README.md and docs/*.md
// says in its info string how it is tested, and is tested that way
// (docs/development.md, "Documentation examples", is the rule):
//
//   ```c compile    compiled with -Wall -Wextra -Werror (gcc and clang)
//   ```c run        compiled, linked with libparty, and run: exit 0
//   ```sh run       run with bash -e against a partyd started here
//   ```js run       run with node as an ES module (.mjs), Node 18's globals
//   ```LANG no-test: REASON
//
// An untagged block fails the test with its file:line. Then it prints how
// many blocks carry each tag.
//
// Environment (set by tests/docs/CMakeLists.txt): PARTYD, PROBE_PARTY and
// GREETER_PARTY (the built binaries), DOCS_CC (the build's compiler),
// DOCS_LIBPARTY (the built libparty.so), DOCS_SANITIZE ("1" when the build
// uses ASan + UBSan: a `c run` program links the same way).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startPartyd, stopPartyd } from '../e2e/helpers.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BLOCK_TIMEOUT_MS = 30000; // a hung block fails; none should come near it
const JOBS = 2;

/** README.md and docs/*.md, as paths relative to the repository. */
function documents() {
  const docs = fs.readdirSync(path.join(repo, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => path.join('docs', f));
  return ['README.md', ...docs];
}

/**
 * The fenced blocks of a document: {doc, line (of the opening fence),
 * lang, tag ('run' | 'compile' | 'no-test' | null), reason, attrs, text,
 * error (a malformed info string)}.
 */
export function parseBlocks(doc, text) {
  const lines = text.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3})(`{3,}|~{3,})(.*)$/.exec(lines[i]);
    if (!open) continue;
    const fence = open[2];
    const info = open[3].trim();
    let j = i + 1;
    while (j < lines.length && !(lines[j].trim().startsWith(fence) && lines[j].trim().replace(/[`~]/g, '') === '')) j++;
    const body = lines.slice(i + 1, j).map((l) => l.slice(Math.min(open[1].length, l.length - l.trimStart().length)));
    const block = { doc, line: i + 1, lang: '', tag: null, reason: '', attrs: {}, text: body.join('\n') + '\n', error: null };
    const words = info.split(/\s+/).filter(Boolean);
    block.lang = words[0] || '';
    if (words[1] === 'no-test:' || (words[1] || '').startsWith('no-test:')) {
      block.tag = 'no-test';
      block.reason = info.slice(info.indexOf('no-test:') + 8).trim();
      if (!block.reason) block.error = 'no-test: needs a reason';
    } else if (words[1] === 'run' || words[1] === 'compile') {
      block.tag = words[1];
      for (const w of words.slice(2)) {
        const m = /^(file)=([\w.-]+)$/.exec(w);
        if (m) block.attrs[m[1]] = m[2];
        else block.error = `unknown attribute ${JSON.stringify(w)} (only file=NAME)`;
      }
      if (block.tag === 'run' && !['sh', 'c', 'js'].includes(block.lang))
        block.error = `a ${block.lang || 'language-less'} block cannot run (sh, c or js)`;
      if (block.tag === 'compile' && block.lang !== 'c')
        block.error = 'only c blocks compile';
    }
    blocks.push(block);
    i = j;
  }
  return blocks;
}

// ---- C ----

/**
 * How a `c` block is compiled (docs/development.md has the rule):
 *   'file'       it has an #include: a whole file, compiled as written;
 *   'toplevel'   it declares or defines at file scope (a column-0 line
 *                starting with #, static, typedef, struct, enum, union,
 *                extern, or TYPE NAME( — a prototype or a definition):
 *                compiled after the prelude, its static functions and
 *                variables marked used;
 *   'statements' anything else: the body of a function that has the
 *                callbacks' arguments in scope.
 */
export function cShape(text) {
  if (/^\s*#\s*include\b/m.test(text)) return 'file';
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '');
  if (/^(#|static\b|typedef\b|struct\b|enum\b|union\b|extern\b)/m.test(code)) return 'toplevel';
  if (/^(const\s+)?[A-Za-z_]\w*[\s*]+[A-Za-z_]\w*\s*\(/m.test(code)) return 'toplevel';
  return 'statements';
}

const PRELUDE = `#include <party.h>
#include <party_test.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sqlite3.h>
`;
const CMOCKA = `#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
`;
// The arguments of the callbacks, and the harness's t and c: a statements
// block may use any of them. They are marked used here, so that a block
// that uses some of them needs no -Wno-unused flag.
const CONTEXT = [
  ['party_room *', 'room'], ['party_conn *', 'conn'], ['const party_request *', 'req'],
  ['party_response *', 'res'], ['const party_lobby *', 'lobby'], ['const void *', 'data'],
  ['size_t ', 'len'], ['int ', 'binary'], ['party_test *', 't'], ['party_test_conn *', 'c'],
];

/** The names of the functions and variables a file-scope block defines as static. */
function staticNames(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '');
  const names = [];
  for (const m of code.matchAll(/^static\b[^=;{(]*?\b([A-Za-z_]\w*)\s*(\(|\[|=)/gm)) names.push(m[1]);
  return names;
}

/** The functions a file-scope block declares without a body. */
function declaredFunctions(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const names = [];
  // A column-0 statement TYPE NAME(...) that ends with ';' before any '{'.
  for (const m of code.matchAll(/^(?!static\b|typedef\b|#)(?:const\s+)?(?:struct\s+)?[A-Za-z_]\w*[\s*]+([A-Za-z_]\w*)\s*\(([^;{]*)\)\s*;/gm))
    names.push(m[1]);
  return names;
}

let headerText = null;
function headers() {
  if (headerText === null)
    headerText = ['party.h', 'party_test.h'].map((h) => fs.readFileSync(path.join(repo, 'include', h), 'utf8')).join('\n');
  return headerText;
}

/** The translation unit a `c` block becomes, and the problems found before compiling. */
export function cSource(block) {
  const shape = cShape(block.text);
  const where = `#line ${block.line + 1} "${block.doc}"\n`;
  const cmocka = /\bassert_\w+\s*\(|\bcmocka_/.test(block.text) ? CMOCKA : '';
  const problems = [];
  if (shape === 'file') return { shape, source: where + block.text, problems };
  if (shape === 'toplevel') {
    // A prototype or macro the block declares must be the header's: the
    // compiler checks that it matches, this checks that it exists.
    for (const name of declaredFunctions(block.text))
      if (name.startsWith('party_') && name !== 'party_module' && !new RegExp(`\\b${name}\\s*\\(`).test(headers()))
        problems.push(`${block.doc}:${block.line}: ${name} is declared here but not in include/party.h or party_test.h`);
    for (const m of block.text.matchAll(/^#\s*define\s+(PARTY_\w+)/gm))
      if (!new RegExp(`#\\s*define\\s+${m[1]}\\b`).test(headers()))
        problems.push(`${block.doc}:${block.line}: ${m[1]} is defined here but not in the headers`);
    const used = staticNames(block.text);
    const marks = used.length === 0 ? '' :
      `\nvoid party__doc_uses(void);\nvoid party__doc_uses(void) {${used.map((n) => ` (void)${n};`).join('')} }\n`;
    return { shape, source: PRELUDE + cmocka + where + block.text + marks, problems };
  }
  const params = CONTEXT.map(([type, name]) => type + name).join(', ');
  const source = `${PRELUDE}${cmocka}
void party__doc_block(${params});
void party__doc_block(${params}) {
   ${CONTEXT.map(([, name]) => ` (void)${name};`).join('')}
    {
${where}${block.text}
    }
}
`;
  return { shape, source, problems };
}

function pkgCflags(pkg) {
  try {
    return execFileSync('pkg-config', ['--cflags', pkg], { encoding: 'utf8' }).trim().split(/\s+/).filter(Boolean);
  } catch {
    return [];
  }
}

/** The file a command runs (symlinks resolved), or null if there is none. */
function resolveCommand(cmd) {
  try {
    const where = execFileSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { encoding: 'utf8' }).trim();
    return fs.realpathSync(where);
  } catch {
    return null;
  }
}

// ---- running things ----

/** Runs a command; resolves {code, signal, stdout, stderr}. Kills it after BLOCK_TIMEOUT_MS. */
function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const proc = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, BLOCK_TIMEOUT_MS);
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    if (opts.input !== undefined) proc.stdin.end(opts.input);
    proc.on('error', (err) => { stderr += String(err); });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) stderr += `\n(killed after ${BLOCK_TIMEOUT_MS} ms)`;
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs tasks (functions returning promises) jobs at a time. */
async function pool(tasks, jobs) {
  const results = new Array(tasks.length);
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(jobs, tasks.length) }, worker));
  return results;
}

function rewritePort(text, port) {
  return text.replace(/\b(127\.0\.0\.1|localhost):1999\b/g, `$1:${port}`);
}

/** Node flags that take away what Node 18 (Debian 12's) does not have. */
function node18Flags() {
  const major = Number(process.versions.node.split('.')[0]);
  const flags = [];
  if (major >= 19 && major < 23) flags.push('--no-experimental-global-webcrypto');
  if (major >= 21) flags.push('--no-experimental-global-navigator');
  if (major >= 22) flags.push('--no-experimental-websocket');
  return flags;
}

function failure(block, what, res, source) {
  const parts = [`${block.doc}:${block.line}: ${what}`];
  if (source !== undefined) parts.push(`--- as compiled ---\n${source}`);
  if (res) {
    if (res.stdout.trim()) parts.push(`--- stdout ---\n${res.stdout.trimEnd()}`);
    if (res.stderr.trim()) parts.push(`--- stderr ---\n${res.stderr.trimEnd()}`);
  }
  return parts.join('\n');
}

// ---- main ----

async function main() {
  const env = process.env;
  for (const name of ['PARTYD', 'PROBE_PARTY', 'GREETER_PARTY', 'DOCS_LIBPARTY']) {
    if (!env[name]) throw new Error(`${name} is not set (run this test through ctest -L docs)`);
  }
  const nodeModules = path.join(repo, 'tests', 'e2e', 'node_modules');
  if (!fs.existsSync(path.join(nodeModules, 'partysocket')) || !fs.existsSync(path.join(nodeModules, 'ws')))
    throw new Error('tests/e2e/node_modules has no ws or partysocket: run `make e2e-deps` first');

  const all = [];
  for (const doc of documents()) all.push(...parseBlocks(doc, fs.readFileSync(path.join(repo, doc), 'utf8')));

  const failures = [];
  for (const b of all) {
    if (b.tag === null)
      failures.push(`${b.doc}:${b.line}: untagged block (\`\`\`${b.lang}): say \`run\`, \`compile\` or \`no-test: <reason>\` after the language`);
    else if (b.error) failures.push(`${b.doc}:${b.line}: ${b.error}`);
  }

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'partyd-docs-'));
  const counts = { compile: 0, run: 0, 'no-test': 0 };
  let passed = 0;
  let server = null;
  try {
    // Each document gets a directory laid out like a checkout: include/,
    // build/release/partyd, partyd on PATH, node_modules for js blocks, and
    // the blocks that name a file= written there in document order.
    const dirs = new Map();
    for (const doc of documents()) {
      const dir = path.join(work, doc.replace(/[/.]/g, '_'));
      fs.mkdirSync(path.join(dir, 'build', 'release'), { recursive: true });
      fs.mkdirSync(path.join(dir, 'bin'));
      fs.symlinkSync(path.join(repo, 'include'), path.join(dir, 'include'));
      fs.symlinkSync(env.PARTYD, path.join(dir, 'build', 'release', 'partyd'));
      fs.symlinkSync(env.PARTYD, path.join(dir, 'bin', 'partyd'));
      fs.symlinkSync(nodeModules, path.join(dir, 'node_modules'));
      dirs.set(doc, dir);
    }
    const tested = all.filter((b) => b.tag !== null && !b.error);
    for (const b of tested) {
      counts[b.tag]++;
      if (b.attrs.file) fs.writeFileSync(path.join(dirs.get(b.doc), b.attrs.file), b.text);
    }

    // C blocks: gcc (what `cc` is for most readers) and clang when there.
    const compilers = [];
    const seen = new Set();
    for (const cc of [env.DOCS_CC || 'cc', 'cc', 'clang']) {
      const real = resolveCommand(cc);
      if (real !== null && !seen.has(real)) {
        seen.add(real);
        compilers.push(cc);
      }
    }
    const includes = ['-I', path.join(repo, 'include'), '-I', path.join(repo, 'parties'), ...pkgCflags('libcjson')];
    const warn = ['-std=gnu11', '-Wall', '-Wextra', '-Werror', '-O1'];
    const cTasks = [];
    for (const b of tested.filter((x) => x.lang === 'c' && (x.tag === 'compile' || x.tag === 'run'))) {
      const { source, problems } = cSource(b);
      failures.push(...problems);
      const file = path.join(dirs.get(b.doc), `block_${b.line}.c`);
      fs.writeFileSync(file, source);
      for (const cc of compilers) {
        cTasks.push(async () => {
          const res = await run(cc, [...warn, ...includes, '-c', '-o', '/dev/null', file]);
          if (res.code !== 0) return failure(b, `does not compile cleanly with ${cc} -Wall -Wextra -Werror`, res, source);
          return null;
        });
      }
    }
    const compiling = pool(cTasks, JOBS);

    // The built-in parties, probe and greeter, and the admin token of
    // docs/operations.md's example, so its curl of /_partyd/rooms runs.
    server = await startPartyd(['--admin-token', 's3cret']);
    const runFailures = [];
    for (const b of tested.filter((x) => x.tag === 'run')) {
      const dir = dirs.get(b.doc);
      let res;
      if (b.lang === 'sh') {
        const script = 'set -e -o pipefail\n' +
          // A documented request that gets an HTTP error fails the block.
          'curl() { command curl --silent --show-error --fail-with-body "$@"; }\n' +
          rewritePort(b.text, server.port);
        res = await run('bash', ['-c', script], { cwd: dir, env: { ...env, PATH: `${path.join(dir, 'bin')}:${env.PATH}` } });
      } else if (b.lang === 'js') {
        const file = path.join(dir, `block_${b.line}.mjs`);
        fs.writeFileSync(file, rewritePort(b.text, server.port));
        res = await run(process.execPath, [...node18Flags(), file], { cwd: dir });
      } else {
        const { source } = cSource(b);
        const file = path.join(dir, `block_${b.line}.c`);
        const exe = path.join(dir, `block_${b.line}`);
        const link = [...warn, ...(env.DOCS_SANITIZE === '1' ? ['-fsanitize=address,undefined'] : []), ...includes,
          '-o', exe, file, env.DOCS_LIBPARTY, `-Wl,-rpath,${path.dirname(env.DOCS_LIBPARTY)}`, '-lcmocka'];
        res = await run(env.DOCS_CC || 'cc', link);
        if (res.code !== 0) {
          runFailures.push(failure(b, 'does not build and link', res, source));
          continue;
        }
        res = await run(exe, [], { cwd: dir });
      }
      if (res.code !== 0) runFailures.push(failure(b, `exited with ${res.code ?? res.signal}`, res));
      else passed++;
    }
    const compileResults = await compiling;
    for (const r of compileResults) if (r === null) passed++; else failures.push(r);
    failures.push(...runFailures);
    await stopPartyd(server);
    server = null;
  } finally {
    if (server) await stopPartyd(server).catch(() => {});
    fs.rmSync(work, { recursive: true, force: true });
  }

  console.log(`doc blocks in README.md and docs/*.md: ${all.length}`);
  for (const [tag, n] of Object.entries(counts)) console.log(`  ${tag}: ${n}`);
  const untagged = all.filter((b) => b.tag === null).length;
  if (untagged) console.log(`  untagged: ${untagged}`);
  for (const f of failures) console.error(`\nFAIL ${f}`);
  console.log(`${passed} passed, ${failures.length} failed`);
  process.exitCode = failures.length === 0 ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
