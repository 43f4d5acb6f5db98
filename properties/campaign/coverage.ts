/**
 * Engine code coverage reached by a campaign: the workers run with NODE_V8_COVERAGE (Node's own
 * V8 coverage, written when a worker exits); c8 maps it back through tsx's source maps to the
 * TypeScript of src/, and this module keeps, per file, which lines and branches were reached —
 * as hit lists, so shard reports merge by union.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Report } from 'c8';

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
  branchMap: Record<string, unknown>;
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

/** Summarise the V8 coverage files in `dir` for the files of src/. */
export async function summariseCoverage(dir: string): Promise<CoverageSummary> {
  const report = new Report({
    tempDirectory: dir,
    reporter: [],
    include: [path.join(ROOT, 'src/**')],
    exclude: [],
    allowExternal: true,
    excludeNodeModules: true,
    all: false,
  }) as unknown as {
    getCoverageMapFromAllCoverageFiles(): Promise<{ toJSON(): Record<string, IstanbulFile> }>;
  };
  const map = (await report.getCoverageMapFromAllCoverageFiles()).toJSON();
  const files: Record<string, FileCoverage> = {};
  for (const [abs, f] of Object.entries(map)) {
    const rel = path.relative(ROOT, abs);
    if (!rel.startsWith('src/')) continue;
    const { lines, branches } = fromIstanbul(f);
    files[rel] = { lines, branches };
  }
  const sorted = Object.fromEntries(Object.entries(files).sort(([a], [b]) => a.localeCompare(b)));
  return { files: sorted, total: totalsOf(sorted) };
}
