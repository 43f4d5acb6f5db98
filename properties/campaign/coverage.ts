/**
 * Engine code coverage reached by a campaign: the workers run with NODE_V8_COVERAGE (Node's own
 * V8 coverage, written when a worker exits); c8 maps it back through the source maps (the workers'
 * bundle's, worker-bundle.ts, or tsx's when the workers run the sources) to the TypeScript of src/, and this module keeps, per file, which lines and branches were reached —
 * as hit lists, so shard reports merge by union.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { WORKER_BUNDLE } from './worker-bundle.ts';

interface Hits {
  total: number;
  covered: number;
}

export interface FileCoverage {
  /** Lines with a statement; `hit`: the reached ones, as `a-b,c` ranges. */
  lines: Hits & { hit: string };
  /** Branch arms (`branch.arm`); `hit`: the reached ones. */
  branches: Hits & { hit: string[] };
}

export interface CoverageSummary {
  /** Paths relative to the repository (`src/engine/refcounts.ts`). */
  files: Record<string, FileCoverage>;
  total: { lines: Hits; branches: Hits };
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface IstanbulFile {
  statementMap: Record<string, { start: { line: number } }>;
  s: Record<string, number>;
  b: Record<string, number[]>;
}

export function lineRanges(lines: Iterable<number>): string {
  const sorted = [...new Set(lines)].sort((a, b) => a - b);
  const out: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

export function parseLineRanges(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',').filter(Boolean)) {
    const [a, b] = part.split('-').map(Number);
    for (let x = a; x <= (b ?? a); x++) out.push(x);
  }
  return out;
}

/** One file's coverage from istanbul's form (a line is reached when a statement on it ran). */
function fromIstanbul(f: IstanbulFile): FileCoverage & { allLines: number[] } {
  const all = new Set<number>();
  const hit = new Set<number>();
  for (const [id, loc] of Object.entries(f.statementMap)) {
    all.add(loc.start.line);
    if ((f.s[id] ?? 0) > 0) hit.add(loc.start.line);
  }
  const arms: string[] = [];
  let total = 0;
  for (const [id, counts] of Object.entries(f.b)) {
    counts.forEach((n, arm) => {
      total++;
      if (n > 0) arms.push(`${id}.${arm}`);
    });
  }
  return {
    allLines: [...all],
    lines: { total: all.size, covered: hit.size, hit: lineRanges(hit) },
    branches: { total, covered: arms.length, hit: arms },
  };
}

export function totalsOf(files: Record<string, FileCoverage>): CoverageSummary['total'] {
  const total = { lines: { total: 0, covered: 0 }, branches: { total: 0, covered: 0 } };
  for (const f of Object.values(files)) {
    total.lines.total += f.lines.total;
    total.lines.covered += f.lines.covered;
    total.branches.total += f.branches.total;
    total.branches.covered += f.branches.covered;
  }
  return total;
}

/**
 * The conversion runs in a worker thread (plain JavaScript: c8 only), so a campaign can stop
 * waiting for it at its deadline: c8 maps every script's coverage through its source map, which
 * takes seconds on a loaded machine.
 */
const CONVERTER = `
const { workerData, parentPort } = require('node:worker_threads');
const { Report } = require(workerData.c8);
(async () => {
  const report = new Report({
    tempDirectory: workerData.dir,
    reporter: [],
    // src/'s scripts (tsx), and the workers' bundle, whose map leads back to src/ (kept below)
    include: [workerData.src + '**', workerData.bundle],
    exclude: [],
    allowExternal: true,
    excludeNodeModules: true,
    all: false,
  });
  // Node records no source map for an ES module it did not compile through a loader hook: the
  // bundle's own (written beside it) is handed to c8 here, as c8 does for its --all files.
  try {
    const text = require('node:fs').readFileSync(workerData.bundle + '.map', 'utf8');
    report.sourceMapCache[require('node:url').pathToFileURL(workerData.bundle).href] = { data: JSON.parse(text) };
  } catch {
    // no bundle: the workers ran the sources through tsx
  }
  const map = (await report.getCoverageMapFromAllCoverageFiles()).toJSON();
  const out = {};
  for (const [file, f] of Object.entries(map))
    if (file.startsWith(workerData.src)) out[file] = { statementMap: f.statementMap, s: f.s, b: f.b };
  parentPort.postMessage({ files: out });
})().catch((e) => parentPort.postMessage({ error: String((e && e.stack) || e) }));
`;

export class CoverageTimeout extends Error {}

/**
 * Summarise the V8 coverage files in `dir` for the files of src/; rejects with CoverageTimeout
 * when it has not finished by `deadline` (epoch ms).
 */
export async function summariseCoverage(
  dir: string,
  deadline = Number.MAX_SAFE_INTEGER,
): Promise<CoverageSummary> {
  const worker = new Worker(CONVERTER, {
    eval: true,
    workerData: {
      dir,
      src: path.join(ROOT, 'src/'),
      bundle: WORKER_BUNDLE,
      c8: createRequire(import.meta.url).resolve('c8'),
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await new Promise<{ files?: Record<string, IstanbulFile>; error?: string }>(
      (resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        // (no timer without a deadline: Node fires a delay past 2^31 − 1 ms after 1 ms)
        if (deadline < Number.MAX_SAFE_INTEGER)
          timer = setTimeout(
            () => reject(new CoverageTimeout('the coverage summary did not finish within the budget')),
            Math.max(0, deadline - Date.now()),
          );
      },
    );
    if (result.error !== undefined || !result.files) throw new Error(result.error ?? 'no coverage');
    const files: Record<string, FileCoverage> = {};
    for (const [abs, f] of Object.entries(result.files)) {
      const { lines, branches } = fromIstanbul(f);
      files[path.relative(ROOT, abs)] = { lines, branches };
    }
    const sorted = Object.fromEntries(Object.entries(files).sort(([a], [b]) => a.localeCompare(b)));
    return { files: sorted, total: totalsOf(sorted) };
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
}
