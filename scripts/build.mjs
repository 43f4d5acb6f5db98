/**
 * Builds the published CLI: each entry in ENTRIES is bundled by esbuild into dist/<name>.mjs (one
 * ES module per entry, our sources inlined, npm packages left as imports). Run by `npm install` /
 * `npm ci` through `prepare`, and by bin/ on first run when dist/ is missing or older than the
 * sources (see isStale). Plain JavaScript so that it runs before anything is compiled.
 *
 * Each output is written to a temporary file and renamed into place, so that processes starting
 * at the same time never see half a bundle; the stamp file is written last.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(ROOT, 'dist');
export const STAMP = path.join(DIST, '.stamp');

/** Published entry points: output name → source. bin/<tool>.js loads dist/<name>.mjs. */
export const ENTRIES = { qcow2: 'src/cli/main.ts' };

/** The newest modification time (ms) of the inputs of the build: src/, package.json, this script. */
function newestInput() {
  let newest = 0;
  const visit = (p) => {
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) visit(path.join(p, e));
    else if (st.mtimeMs > newest) newest = st.mtimeMs;
  };
  visit(path.join(ROOT, 'src'));
  visit(path.join(ROOT, 'package.json'));
  visit(fileURLToPath(import.meta.url));
  return newest;
}

/** True when dist/ is missing, or older than a source (a checkout that skipped `prepare`, an edit). */
export function isStale(name = 'qcow2') {
  let built;
  try {
    built = fs.statSync(STAMP).mtimeMs;
    if (!fs.existsSync(path.join(DIST, `${name}.mjs`))) return true;
  } catch {
    return true;
  }
  // A published package may ship dist/ without src/: nothing to compare with, so it is current.
  if (!fs.existsSync(path.join(ROOT, 'src'))) return false;
  return newestInput() > built;
}

export async function build() {
  const esbuild = await import('esbuild');
  fs.mkdirSync(DIST, { recursive: true });
  const tag = `${process.pid}.${Date.now()}`;
  const result = esbuild.buildSync({
    entryPoints: Object.fromEntries(
      Object.entries(ENTRIES).map(([name, src]) => [name, path.join(ROOT, src)]),
    ),
    outdir: DIST,
    outExtension: { '.js': '.mjs' },
    // Each verb (and what only it needs) becomes a chunk loaded by its dynamic import, so that a
    // command parses only its own code. Chunk names carry a content hash: a chunk never changes
    // once written, so concurrent builds and running processes never see a mixed set.
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Small pure-JS packages (pako, aes-js) are inlined into the chunks that use them. koffi (a
    // native addon) and zstd-wasm (reads its .wasm beside itself) stay packages, loaded on demand.
    external: ['koffi', '@bokuweb/zstd-wasm', 'esbuild', 'tsx', 'execa', 'fast-check'],
    // A separate map (node --enable-source-maps) keeps the bundle small to parse at start.
    sourcemap: 'external',
    sourcesContent: false,
    write: false,
    logLevel: 'error',
  });
  // Entry files last: each is renamed into place only once every chunk it imports exists.
  const isEntry = (p) => Object.keys(ENTRIES).some((name) => p === path.join(DIST, `${name}.mjs`));
  const files = [...result.outputFiles].sort((a, b) => Number(isEntry(a.path)) - Number(isEntry(b.path)));
  for (const f of files) {
    fs.mkdirSync(path.dirname(f.path), { recursive: true });
    const tmp = `${f.path}.${tag}.tmp`;
    fs.writeFileSync(tmp, f.contents);
    fs.renameSync(tmp, f.path);
  }
  // Chunks of earlier builds: removed once they are a minute old (a process started just before
  // this build may still import them).
  const current = new Set(files.map((f) => f.path));
  const chunks = path.join(DIST, 'chunks');
  for (const e of fs.readdirSync(chunks)) {
    const p = path.join(chunks, e);
    if (
      !current.has(p) &&
      !current.has(p.replace(/\.map$/, '')) &&
      Date.now() - fs.statSync(p).mtimeMs > 60_000
    )
      fs.rmSync(p, { force: true });
  }
  const stampTmp = `${STAMP}.${tag}.tmp`;
  fs.writeFileSync(stampTmp, `${new Date().toISOString()}\n`);
  fs.renameSync(stampTmp, STAMP);
}

if (process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url) {
  await build();
}
