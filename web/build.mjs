// Builds the browser demo into a directory (default web/dist): the page,
// its stylesheet, and app.js with the partysocket client bundled by esbuild.
//   node web/build.mjs [OUTDIR]
// The browser test imports buildDemo() to build into the build tree.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const copied = ['index.html', 'style.css'];

/** Writes the demo into outdir (created if missing). */
export async function buildDemo(outdir) {
  fs.mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: [path.join(here, 'src', 'app.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    sourcemap: true,
    outfile: path.join(outdir, 'app.js'),
    logLevel: 'warning',
  });
  for (const name of copied) fs.copyFileSync(path.join(here, 'src', name), path.join(outdir, name));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outdir = path.resolve(process.argv[2] ?? path.join(here, 'dist'));
  await buildDemo(outdir);
  console.log(`demo built into ${outdir}`);
}
