/**
 * Builds the published CLI: each entry in ENTRIES is bundled by esbuild into dist/<name>.cjs, one
 * CommonJS script (our sources and small pure-JS packages inlined, the others left as requires),
 * which bin/load-cli.js compiles with V8's code cache. Run by `npm install` / `npm ci` through
 * `prepare`, and by bin/ on first run when dist/ is missing or older than the sources (isStale).
 * Plain JavaScript so that it runs before anything is compiled.
 *
 * The bundle is written to a temporary file and renamed into place, so that processes starting at
 * the same time never see half a bundle; then a warm-up run writes the code cache
 * (dist/<name>.cjs.v8cache), and the stamp file is written last.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import distState from '../bin/dist-state.js';
import { shareInteropWrappers } from './share-interop.mjs';

export const { ROOT, DIST, STAMP, isStale } = distState;

/** Published entry points: output name → source. bin/<tool>.js loads dist/<name>.cjs. */
export const ENTRIES = { qcow2: 'src/cli/main.ts' };

/**
 * The warm-up: the bundle runs a few verbs on a scratch image, then saves the code cache, which
 * then holds every function those runs compiled. A child process, so that the cache is made by a
 * plain `node` (V8 rejects a cache made under other flags, e.g. tsx's or vitest's).
 */
const WARM_UP = `
const fs = require('node:fs'), os = require('node:os'), path = require('node:path');
const { loadBundle } = require(process.argv[1]);
const b = loadBundle(process.argv[2]);
const quiet = { out() {}, err() {} };
(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-warm-'));
  const img = path.join(dir, 'w.qcow2');
  try {
    for (const argv of [
      ['--version'],
      ['create', '-q', '-f', 'qcow2', img, '64M'],
      ['io', '-c', 'write -P 1 0 128k', img],
      ['info', img],
      ['info', '--output=json', img],
      ['check', img],
      ['map', img],
      ['map', '--output=json', img],
      ['compare', img, img],
      ['convert', '-O', 'qcow2', img, img + '.copy'],
    ])
      await b.exports.main(argv, quiet);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  b.saveCache();
})();
`;

export async function build() {
  const esbuild = await import('esbuild');
  fs.mkdirSync(DIST, { recursive: true });
  const tag = `${process.pid}.${Date.now()}`;
  for (const [name, src] of Object.entries(ENTRIES)) {
    const file = distState.bundlePath(name);
    const result = esbuild.buildSync({
      entryPoints: [path.join(ROOT, src)],
      outfile: file,
      bundle: true,
      platform: 'node',
      // CommonJS: Node 20 has a code cache for scripts (vm.Script cachedData), not for ES modules.
      // Each verb stays behind its dynamic import, which esbuild turns into a lazily run
      // initializer: a command runs only its own modules' top-level code.
      format: 'cjs',
      target: 'node20',
      // import.meta.url (createRequire of koffi and zstd-wasm) is the bundle's own URL.
      define: { 'import.meta.url': '__qcow2_bundle_url' },
      banner: { js: 'var __qcow2_bundle_url = require("node:url").pathToFileURL(__filename).href;' },
      // Small pure-JS packages (pako, aes-js) are inlined. koffi (a native addon) and zstd-wasm
      // (reads its .wasm beside itself) stay packages, required on first use.
      external: ['koffi', '@bokuweb/zstd-wasm', 'esbuild', 'tsx', 'execa', 'fast-check'],
      // No whitespace or comments, ASCII only (non-ASCII characters escaped): bin/load-cli.js
      // reads the bundle as latin1, a plain copy, where UTF-8 would be decoded at every start.
      minifyWhitespace: true,
      charset: 'ascii',
      // A separate map (node --enable-source-maps) keeps the bundle small to parse at start.
      sourcemap: 'external',
      sourcesContent: false,
      write: false,
      logLevel: 'error',
    });
    const out = result.outputFiles.find((f) => f.path === file);
    const nonAscii = out?.contents.findIndex((b) => b > 0x7f) ?? -1;
    if (nonAscii >= 0)
      throw new Error(`build: ${file} has a non-ASCII byte at ${nonAscii} (it is read as latin1)`);
    // Interop wrappers made once per module (share-interop.mjs), in the bundle and its map.
    const contents = new Map(result.outputFiles.map((f) => [f.path, f.contents]));
    const mapOut = result.outputFiles.find((f) => f.path === `${file}.map`);
    if (out && mapOut) {
      const s = shareInteropWrappers(Buffer.from(out.contents).toString('latin1'), JSON.parse(mapOut.text));
      if (!s.shared) process.stderr.write("build: esbuild's __toESM helper not found; wrappers not shared\n");
      contents.set(file, Buffer.from(s.code, 'latin1'));
      contents.set(mapOut.path, Buffer.from(JSON.stringify(s.map)));
    }
    // The map first, the bundle last: each is renamed into place.
    const files = [...contents.keys()].sort((a, b) => Number(a === file) - Number(b === file));
    for (const f of files) {
      const tmp = `${f}.${tag}.tmp`;
      fs.writeFileSync(tmp, contents.get(f));
      fs.renameSync(tmp, f);
    }
    const warm = spawnSync(process.execPath, ['-e', WARM_UP, path.join(ROOT, 'bin', 'load-cli.js'), name], {
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    // Without a cache the CLI still runs (and writes one at its first exit): not a build failure.
    if (warm.status !== 0) process.stderr.write(`build: code cache warm-up failed: ${warm.stderr}\n`);
  }
  // Outputs of the earlier, ES-module build (dist/qcow2.mjs and its chunks).
  fs.rmSync(path.join(DIST, 'chunks'), { recursive: true, force: true });
  for (const name of Object.keys(ENTRIES))
    for (const ext of ['.mjs', '.mjs.map']) fs.rmSync(path.join(DIST, `${name}${ext}`), { force: true });
  const stampTmp = `${STAMP}.${tag}.tmp`;
  fs.writeFileSync(stampTmp, `${new Date().toISOString()}\n`);
  fs.renameSync(stampTmp, STAMP);
}

if (process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url) {
  await build();
}
