/**
 * The entry of the campaign workers' bundle (worker-bundle.ts builds it into dist/): a worker
 * process as `qcow2 fuzz --worker` runs one (workers.ts), from one prebuilt ES module instead of
 * some 250 TypeScript files compiled and resolved through tsx at every worker's start.
 *
 * The engine adapter loads the engine by URL at run time (properties/adapters/engine.ts, so that
 * QCOW2_ENGINE can name a planted copy); the bundle carries the repository's engine, and loader
 * hooks (bundled-modules-hooks.mjs) answer an import of those very URLs with the bundled modules.
 * A worker for a planted copy (QCOW2_ENGINE set) is never started from the bundle (worker-bundle.ts).
 */
import { register } from 'node:module';
import * as engine from '../../src/image.ts';
import * as luks from '../../src/crypto/luks.ts';
import { runWorkerProcess } from './workers.ts';

/** What the adapter imports by URL (engine.ts: DEFAULT_ENGINE and the luks module beside it). */
const BUNDLED: Record<string, { url: string; module: Record<string, unknown> }> = {
  engine: { url: new URL('../../src/image.ts', import.meta.url).href, module: engine },
  luks: { url: new URL('../../src/crypto/luks.ts', import.meta.url).href, module: luks },
};

// The loader hooks' thread runs no engine code: it writes no coverage file (Node took this
// process's coverage directory at its start).
const coverageOn = process.env.NODE_V8_COVERAGE !== undefined;
delete process.env.NODE_V8_COVERAGE;

(globalThis as { __qcow2Bundled?: Record<string, Record<string, unknown>> }).__qcow2Bundled =
  Object.fromEntries(Object.entries(BUNDLED).map(([name, b]) => [name, b.module]));
register(new URL('./bundled-modules-hooks.mjs', import.meta.url), {
  data: Object.fromEntries(
    Object.entries(BUNDLED).map(([name, b]) => [b.url, { name, exports: Object.keys(b.module) }]),
  ),
});

const code = await runWorkerProcess(coverageOn);
// Exit now (V8 writes the worker's coverage on exit), whatever handles are left.
process.exit(code);
