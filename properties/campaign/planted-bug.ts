/**
 * A scratch copy of the engine with one planted line, for tests of the campaign machinery: the
 * copy of src/image.ts imports the repository's modules by absolute path and is selected with
 * QCOW2_ENGINE (properties/adapters/engine.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Multi-cluster writes write their first cluster only (reads and converts then see stale data). */
export const WRITE_FIRST_CLUSTER_ONLY = {
  line: '      this.writeCluster(guestCluster, inCluster, data.subarray(done, done + n));',
  planted: '      if (done === 0) this.writeCluster(guestCluster, inCluster, data.subarray(done, done + n));',
};

/** Writes the planted copy into a new temporary directory; returns the module's path. */
export function plantEngineBug(bug: { line: string; planted: string } = WRITE_FIRST_CLUSTER_ONLY): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-planted-'));
  const source = fs
    .readFileSync(path.join(SRC, 'image.ts'), 'utf8')
    .replace(/from '\.\/([^']+)'/g, (_m, rel: string) => `from '${path.join(SRC, rel)}'`);
  if (source.split(bug.line).length !== 2)
    throw new Error(`the planted line is not in src/image.ts once: ${bug.line}`);
  fs.writeFileSync(path.join(dir, 'image.ts'), source.replace(bug.line, bug.planted));
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  return path.join(dir, 'image.ts');
}
