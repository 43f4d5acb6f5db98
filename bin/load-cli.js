// Loads the CLI for bin/<tool>.js: the compiled bundle dist/<name>.cjs (scripts/build.mjs), rebuilt
// first when missing or older than the sources, so a checkout that skipped `prepare` works.
// QCOW2_TSX=1 runs the TypeScript sources through tsx instead (development).
//
// The bundle is one CommonJS script compiled through vm.Script with V8's code cache
// (dist/<name>.cjs.v8cache): a start deserializes the functions an earlier run compiled instead of
// parsing and compiling ~650 KB of JavaScript again. CommonJS, because Node 20 offers a code cache
// for scripts only (vm.Script cachedData), not for ES modules; it also spares the ES module loader.
'use strict';
// V8 optimises a function (TurboFan) once it has run for an "interrupt budget" of bytecode. Every
// qcow2 command is a short process whose hot loops (a request path, a table walk) would get
// optimised within milliseconds, the compile costing more CPU than it saves; a larger budget
// optimises only what keeps running. Measured on `qcow2 bench` (4096 requests of 64 KiB, a fresh
// process): user CPU of the loop 129-148 ms with V8's default, 58-73 ms with 500000 (writes),
// 52-60 and 22-42 ms (reads). Set before the bundle is compiled, so its code cache carries it.
// bin/qcow2.js started as an executable gives the default on node's command line: loading node:v8
// to set it costs 1.4-1.9 ms of CPU at every start (measured). The flag is the same either way, so
// the code cache (whose flag hash must match) is valid for both kinds of start.
const BUDGET_FLAG = `--interrupt-budget=${INTERRUPT_BUDGET()}`;
if (!process.execArgv.includes(BUDGET_FLAG)) require('node:v8').setFlagsFromString(BUDGET_FLAG);
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { createRequire } = require('node:module');
const { pathToFileURL } = require('node:url');
const { ROOT, bundlePath, codeCachePath, isStale } = require('./dist-state.js');

/** The entry's exports (e.g. `{ main, … }` for qcow2); `source` is its TypeScript path, for tsx. */
async function loadCli(name, source) {
  if (process.env.QCOW2_TSX === '1') return importSource(source);
  if (isStale(name)) {
    try {
      await (await import('../scripts/build.mjs')).build();
    } catch (e) {
      process.stderr.write(`qcow2: could not build dist/ (${e.message}); running the sources\n`);
      return importSource(source);
    }
  }
  return loadBundle(name).exports;
}

/**
 * Runs dist/<name>.cjs as a CommonJS module, with the code cache when there is a valid one.
 * Without one (first run, another Node or V8 flags), the cache is written when the process is about
 * to exit, so that it holds the functions this run compiled. `saveCache()` writes it now; `cache`
 * says how this start went: 'accepted', 'rejected' (V8 refused it) or 'none'.
 */
function loadBundle(name) {
  const file = bundlePath(name);
  const cacheFile = codeCachePath(name);
  // ASCII (scripts/build.mjs checks): latin1 is a plain copy into a one-byte string.
  const source = fs.readFileSync(file, 'latin1');
  // V8 checks a cache against the source's length only: the cache names the bundle it was made
  // from (inode, size, mtime; every build renames a new file into place) and is used for it alone.
  const st = fs.statSync(file);
  const key = Buffer.from(`qcow2-v8cache ${st.ino} ${st.size} ${st.mtimeMs}\n`);
  let cachedData;
  try {
    const c = fs.readFileSync(cacheFile);
    if (c.subarray(0, key.length).equals(key)) cachedData = c.subarray(key.length);
  } catch {
    cachedData = undefined; // none yet
  }
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new vm.Script(wrapped, { filename: file, cachedData });
  const mod = { exports: {}, filename: file, id: file };
  script.runInThisContext()(mod.exports, createRequire(file), mod, file, path.dirname(file));
  const saveCache = () => {
    // Written beside the bundle and renamed into place: concurrent starts never read half a cache.
    // A read-only installation simply runs without one.
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, Buffer.concat([key, script.createCachedData()]));
      fs.renameSync(tmp, cacheFile);
    } catch {
      fs.rmSync(tmp, { force: true });
    }
  };
  if (cachedData === undefined || script.cachedDataRejected) process.once('beforeExit', saveCache);
  const cache = cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted';
  return { exports: mod.exports, saveCache, cache };
}

async function importSource(source) {
  const { register } = await import('tsx/esm/api');
  register();
  return import(pathToFileURL(path.join(ROOT, source)).href);
}

/** QCOW2_INTERRUPT_BUDGET overrides it (measurements). */
function INTERRUPT_BUDGET() {
  const v = Number(process.env.QCOW2_INTERRUPT_BUDGET);
  return Number.isInteger(v) && v > 0 ? v : 500000;
}

module.exports = { loadCli, loadBundle };
