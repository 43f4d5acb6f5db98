// Loads a CLI entry point for bin/<tool>.js: the compiled bundle dist/<name>.mjs (scripts/build.mjs),
// rebuilt first when missing or older than the sources, so a checkout that skipped `prepare` works.
// QCOW2_TSX=1 runs the TypeScript sources through tsx instead (development).
import { isStale, build } from '../scripts/build.mjs';

const root = new URL('../', import.meta.url);

/** The entry's module (e.g. `{ main }` for qcow2); `source` is its TypeScript path, for tsx. */
export async function loadCli(name, source) {
  if (process.env.QCOW2_TSX === '1') return importSource(source);
  if (isStale(name)) {
    try {
      await build();
    } catch (e) {
      process.stderr.write(`qcow2: could not build dist/ (${e.message}); running the sources\n`);
      return importSource(source);
    }
  }
  return import(new URL(`dist/${name}.mjs`, root).href);
}

async function importSource(source) {
  const { register } = await import('tsx/esm/api');
  register();
  return import(new URL(source, root).href);
}
