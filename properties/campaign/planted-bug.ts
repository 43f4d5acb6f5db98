/**
 * A scratch copy of the engine with one planted line, for tests of the harness: the whole of src/
 * is copied (under node_modules/.cache, so that its packages still resolve), one line of one file
 * is changed, and the copy's image.ts is selected with QCOW2_ENGINE (properties/adapters/engine.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = path.join(ROOT, 'src');

export interface PlantedBug {
  /** The file under src/ that gets the bug. */
  file: string;
  line: string;
  planted: string;
}

/** Multi-cluster writes write their first cluster only (reads and converts then see stale data). */
export const WRITE_FIRST_CLUSTER_ONLY: PlantedBug = {
  file: 'engine/data-path.ts',
  line: '      this.writeCluster(guestCluster, inCluster, data.subarray(done, done + n));',
  planted: '      if (done === 0) this.writeCluster(guestCluster, inCluster, data.subarray(done, done + n));',
};

/** Writes the planted copy into a new directory; returns the path of its image.ts. */
export function plantEngineBug(bug: PlantedBug = WRITE_FIRST_CLUSTER_ONLY): string {
  const cache = path.join(ROOT, 'node_modules', '.cache');
  fs.mkdirSync(cache, { recursive: true });
  const dir = fs.mkdtempSync(path.join(cache, 'qcow2-planted-'));
  const copy = path.join(dir, 'src');
  fs.cpSync(SRC, copy, { recursive: true });
  const target = path.join(copy, bug.file);
  const source = fs.readFileSync(target, 'utf8');
  if (source.split(bug.line).length !== 2)
    throw new Error(`the planted line is not in src/${bug.file} once: ${bug.line}`);
  fs.writeFileSync(target, source.replace(bug.line, bug.planted));
  // Under node_modules the repository's package.json is not the copy's scope: say it is ESM.
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  return path.join(copy, 'image.ts');
}
