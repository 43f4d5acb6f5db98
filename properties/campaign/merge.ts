/**
 * `qcow2 fuzz merge REPORT.json... [--report OUT.json]`: shard reports of one campaign (same seed,
 * same implementation) into one. Counts are sums, indices and coverage hits unions, failures are
 * keyed by signature (counts summed, the earliest first sighting, the best — smallest — case).
 */
import { parseArgs } from 'node:util';
import { fromRanges, toRanges } from './seed-space.ts';
import {
  lineRanges,
  parseLineRanges,
  totalsOf,
  type CoverageSummary,
  type FileCoverage,
} from './coverage.ts';
import {
  exitCodeOf,
  knownBugsOf,
  readReport,
  writeReport,
  type CampaignReport,
  type FailureEntry,
} from './report.ts';
import { summary } from './fuzz-cli.ts';

export class MergeError extends Error {}

const addInto = (into: Record<string, number>, from: Record<string, number>): void => {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
};

/** The better of two shrunk cases of one signature: a saved one, then the fewest steps. */
function better(a: FailureEntry['shrink'], b: FailureEntry['shrink']): FailureEntry['shrink'] {
  if (!a) return b;
  if (!b) return a;
  if (Boolean(a.case) !== Boolean(b.case)) return a.case ? a : b;
  return b.steps.length < a.steps.length ? b : a;
}

function mergeCoverage(list: (CoverageSummary | null)[]): CoverageSummary | null {
  const present = list.filter((c): c is CoverageSummary => c !== null);
  if (present.length === 0) return null;
  const files: Record<string, FileCoverage> = {};
  const acc = new Map<string, { total: number; lines: Set<number>; btotal: number; arms: Set<string> }>();
  for (const c of present)
    for (const [file, f] of Object.entries(c.files)) {
      const a = acc.get(file) ?? { total: 0, lines: new Set(), btotal: 0, arms: new Set() };
      a.total = Math.max(a.total, f.lines.total);
      a.btotal = Math.max(a.btotal, f.branches.total);
      for (const l of parseLineRanges(f.lines.hit)) a.lines.add(l);
      for (const arm of f.branches.hit) a.arms.add(arm);
      acc.set(file, a);
    }
  for (const [file, a] of [...acc.entries()].sort(([x], [y]) => x.localeCompare(y)))
    files[file] = {
      lines: { total: a.total, covered: a.lines.size, hit: lineRanges(a.lines) },
      branches: { total: a.btotal, covered: a.arms.size, hit: [...a.arms].sort() },
    };
  return { files, total: totalsOf(files) };
}

export function mergeReports(reports: readonly CampaignReport[]): CampaignReport {
  if (reports.length === 0) throw new MergeError('nothing to merge');
  const first = reports[0];
  for (const r of reports) {
    const a = first.identity;
    const b = r.identity;
    if (b.seed !== a.seed || b.impl !== a.impl || b.task !== a.task)
      throw new MergeError(
        `reports of different campaigns: ${a.task} ${a.impl} seed ${a.seed} vs ${b.task} ${b.impl} seed ${b.seed}`,
      );
  }
  const seen = new Set<number>();
  for (const r of reports)
    for (const i of fromRanges(r.indices)) {
      if (seen.has(i)) throw new MergeError(`sequence ${i} is in two reports (the same shard twice?)`);
      seen.add(i);
    }

  const volume: CampaignReport['volume'] = {
    sequences: 0,
    operations: 0,
    steps: 0,
    byKind: {},
    byLayout: {},
    shrinkMs: 0,
  };
  const lengths: Record<string, number> = {};
  for (const r of reports) {
    volume.sequences += r.volume.sequences;
    volume.operations += r.volume.operations;
    volume.steps += r.volume.steps;
    volume.shrinkMs += r.volume.shrinkMs;
    for (const k of ['loopMs', 'loopCpuMs', 'cpuMs', 'toolsCpuMs'] as const)
      if (r.volume[k] !== undefined) volume[k] = (volume[k] ?? 0) + r.volume[k];
    addInto(volume.byKind, r.volume.byKind);
    addInto(volume.byLayout, r.volume.byLayout);
    addInto(lengths, r.lengths);
  }

  // Throughput: the shards ran side by side; sum them over time at the coarsest bucket.
  const bucketSeconds = Math.max(...reports.map((r) => r.throughput.bucketSeconds));
  const buckets = new Map<number, { sequences: number; operations: number }>();
  for (const r of reports)
    for (const p of r.throughput.points) {
      const t = Math.floor(p.t / bucketSeconds) * bucketSeconds;
      const b = buckets.get(t) ?? { sequences: 0, operations: 0 };
      b.sequences += p.sequences;
      b.operations += p.operations;
      buckets.set(t, b);
    }
  const points = [...buckets.entries()].sort(([a], [b]) => a - b).map(([t, b]) => ({ t, ...b }));

  const failures = new Map<string, FailureEntry>();
  for (const r of reports)
    for (const f of r.failures) {
      const m = failures.get(f.key);
      if (!m) {
        failures.set(f.key, structuredClone(f));
        continue;
      }
      m.count += f.count;
      m.firstSeenMs = Math.min(m.firstSeenMs, f.firstSeenMs);
      if (f.firstIndex < m.firstIndex) {
        m.firstIndex = f.firstIndex;
        m.message = f.message;
        m.unshrunkSteps = f.unshrunkSteps;
      }
      m.shrink = structuredClone(better(m.shrink, f.shrink));
      m.signature.knownBug ??= f.signature.knownBug;
    }
  const failureList = [...failures.values()].sort((a, b) => a.firstIndex - b.firstIndex);

  const merged: CampaignReport = {
    format: first.format,
    version: 1,
    identity: {
      ...first.identity,
      shards: reports
        .flatMap((r) => r.identity.shards)
        .sort((a, b) => a.count - b.count || a.index - b.index),
      notes: [...new Set(reports.flatMap((r) => r.identity.notes))],
      startedAt: reports.map((r) => r.identity.startedAt).sort()[0],
    },
    timing: {
      elapsedMs: Math.max(...reports.map((r) => r.timing.elapsedMs)),
      budgetMs: first.timing.budgetMs,
      jobs: reports.reduce((n, r) => n + r.timing.jobs, 0),
    },
    volume,
    indices: toRanges(seen),
    throughput: { bucketSeconds, points },
    lengths,
    coverage: mergeCoverage(reports.map((r) => r.coverage)),
    failures: failureList,
    knownBugs: knownBugsOf(failureList),
    problems: reports.flatMap((r) => r.problems),
    exitCode: 0,
  };
  merged.exitCode = exitCodeOf(merged);
  return merged;
}

const MERGE_USAGE = 'usage: qcow2 fuzz merge REPORT.json... [--report OUT.json]';

export async function runMergeCli(argv: string[]): Promise<number> {
  let files: string[];
  let out: string | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { report: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${MERGE_USAGE}\n`);
      return 0;
    }
    if (positionals.length === 0) throw new MergeError('at least one report');
    files = positionals;
    out = values.report;
  } catch (e) {
    process.stderr.write(`qcow2 fuzz merge: ${(e as Error).message}\n${MERGE_USAGE}\n`);
    return 2;
  }
  let merged: CampaignReport;
  try {
    merged = mergeReports(files.map(readReport));
  } catch (e) {
    process.stderr.write(`qcow2 fuzz merge: ${(e as Error).message}\n`);
    return 2;
  }
  const written = out ? await writeReport(out, merged) : undefined;
  process.stdout.write(summary(merged, written));
  return merged.exitCode;
}
