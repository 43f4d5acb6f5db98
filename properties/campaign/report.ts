/**
 * The campaign report: one JSON document (the data), and beside it a Markdown summary and a
 * self-contained HTML page (report-html.ts). Shard reports merge into one (merge.ts): every count
 * is a sum, indices and coverage hits are unions, failures are keyed by signature.
 */
import type { ReaderReport } from '../readers/reader-oracle.ts';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FailureSignature } from '../runner/signature.ts';
import type { Shard } from './seed-space.ts';
import type { CoverageSummary } from './coverage.ts';
import type { ShrinkOutcome } from './sequence-task.ts';

export const REPORT_FORMAT = 'qcow2-campaign-report';

export interface FailureEntry {
  /** signatureKey(signature): equal keys are the same failure. */
  key: string;
  signature: FailureSignature;
  /** Sequences that failed with this signature. */
  count: number;
  /** Milliseconds from the campaign's start to the first one (the earliest shard's when merged). */
  firstSeenMs: number;
  /** The smallest sequence index that failed with it. */
  firstIndex: number;
  message: string;
  /** Steps of the first failing sequence before shrinking. */
  unshrunkSteps: number;
  /** The one shrink this signature got (null: none, e.g. the worker was killed). */
  shrink: {
    status: ShrinkOutcome['status'];
    steps: string[];
    ms: number;
    case?: string;
    script?: string;
  } | null;
}

export interface CampaignReport {
  format: typeof REPORT_FORMAT;
  version: 1;
  identity: {
    tool: string;
    toolVersion: string;
    gitCommit: string | null;
    task: string;
    impl: string;
    implVersion: string;
    seed: number;
    /** The shard(s) this report covers. */
    shards: Shard[];
    options: Record<string, unknown>;
    host: { hostname: string; cpus: number; node: string };
    startedAt: string;
    notes: string[];
  };
  timing: { elapsedMs: number; budgetMs: number | null; jobs: number };
  volume: {
    sequences: number;
    operations: number;
    steps: number;
    byKind: Record<string, number>;
    byLayout: Record<string, number>;
    /** Time spent shrinking (all workers). */
    shrinkMs: number;
    /**
     * Summed over the sequences (all workers): wall and CPU milliseconds in the operation loop,
     * and CPU milliseconds of whole sequences (the workers' own CPU; qemu tools' excluded).
     * Absent in reports of older versions.
     */
    loopMs?: number;
    loopCpuMs?: number;
    cpuMs?: number;
    /** CPU milliseconds of the tools the sequences ran. */
    toolsCpuMs?: number;
    /** Tool runs the sequences started, by tool and subcommand (absent in older reports). */
    toolRuns?: Record<string, number>;
  };
  /** The sequence indices run, as inclusive ranges. */
  indices: [number, number][];
  /** Sequences and operations completed per time bucket (t: seconds from the start). */
  throughput: { bucketSeconds: number; points: { t: number; sequences: number; operations: number }[] };
  /** Sequence length (steps) → number of sequences. */
  lengths: Record<string, number>;
  coverage: CoverageSummary | null;
  failures: FailureEntry[];
  knownBugs: { id: string; key: string; count: number }[];
  /** Extra readers (`--readers`): features unsupported, sequences checked, failures by signature. */
  readers?: ReaderReport[];
  /** What went wrong with the harness itself (exit code 2 when not empty). */
  problems: string[];
  exitCode: 0 | 1 | 2;
}

/** 0 nothing new, 1 new failures, 2 the harness itself broke. */
export function exitCodeOf(r: Pick<CampaignReport, 'failures' | 'problems'>): 0 | 1 | 2 {
  if (r.problems.length > 0 || r.failures.some((f) => f.signature.oracle === 'harness')) return 2;
  // A reader's defects are its own: they never fail the implementation's campaign.
  return r.failures.some((f) => !f.signature.knownBug && !f.signature.reader) ? 1 : 0;
}

export function knownBugsOf(failures: readonly FailureEntry[]): CampaignReport['knownBugs'] {
  return failures
    .filter((f) => f.signature.knownBug)
    .map((f) => ({ id: f.signature.knownBug as string, key: f.key, count: f.count }));
}

/** Buckets of per-sequence completions (ms from the start) for a throughput plot of ≤ ~60 points. */
export function bucketThroughput(
  completions: readonly { t: number; operations: number }[],
  elapsedMs: number,
): CampaignReport['throughput'] {
  const bucketSeconds = Math.max(1, Math.ceil(elapsedMs / 1000 / 60));
  const n = Math.max(1, Math.ceil(elapsedMs / 1000 / bucketSeconds));
  const points = Array.from({ length: n }, (_, i) => ({ t: i * bucketSeconds, sequences: 0, operations: 0 }));
  for (const c of completions) {
    const b = Math.min(n - 1, Math.floor(c.t / 1000 / bucketSeconds));
    points[b].sequences += 1;
    points[b].operations += c.operations;
  }
  return { bucketSeconds, points };
}

export function readReport(file: string): CampaignReport {
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as CampaignReport;
  if (r.format !== REPORT_FORMAT)
    throw new Error(`${file}: not a campaign report (format '${String(r.format)}')`);
  return r;
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

function table(head: string[], rows: (string | number)[][]): string {
  const esc = (c: string | number): string => String(c).replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

const sortedEntries = (m: Record<string, number>): [string, number][] =>
  Object.entries(m).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));

export function shardText(shards: readonly Shard[]): string {
  if (shards.length === 1 && shards[0].count === 1) return 'whole seed space';
  return shards.map((s) => `${s.index}/${s.count}`).join(', ');
}

/** The Markdown summary. */
export function reportMarkdown(r: CampaignReport): string {
  const id = r.identity;
  const v = r.volume;
  const s = Math.max(r.timing.elapsedMs / 1000, 1e-3);
  const out: string[] = [
    `# ${id.task} campaign: ${id.impl} ${id.implVersion}`,
    '',
    `Exit code **${r.exitCode}** (${['nothing new', 'new failures', 'the harness broke'][r.exitCode]}); ${r.failures.length} distinct failure(s), ${r.knownBugs.length} known bug(s) met.`,
    '',
    '## Identity',
    '',
    table(
      ['what', 'value'],
      [
        ['tool', `${id.tool} ${id.toolVersion} (git ${id.gitCommit ?? 'unknown'})`],
        ['implementation', `${id.impl} ${id.implVersion}`],
        ['seed', id.seed],
        ['shard', shardText(id.shards)],
        [
          'options',
          Object.entries(id.options)
            .map(([k, x]) => `${k}=${JSON.stringify(x)}`)
            .join(', '),
        ],
        ['host', `${id.host.hostname}, ${id.host.cpus} cpus, node ${id.host.node}`],
        ['started', id.startedAt],
        [
          'elapsed',
          `${secs(r.timing.elapsedMs)}${r.timing.budgetMs !== null ? ` of a ${secs(r.timing.budgetMs)} budget` : ''}, ${r.timing.jobs} job(s)`,
        ],
      ],
    ),
    '',
    '## Volume',
    '',
    `${fmt(v.sequences)} sequences, ${fmt(v.operations)} operations, ${fmt(v.steps)} steps (${(v.sequences / s).toFixed(2)} sequences/s, ${fmt(Math.round(v.operations / s))} operations/s); ${secs(v.shrinkMs)} spent shrinking.`,
    '',
    table(['command kind', 'steps'], sortedEntries(v.byKind)),
    '',
    table(['layout class', 'sequences'], sortedEntries(v.byLayout).slice(0, 30)),
    '',
    '## Failures',
    '',
  ];
  if (r.failures.length === 0) out.push('None.', '');
  for (const f of r.failures) {
    const sig = f.signature;
    out.push(
      `### ${sig.oracle} after ${sig.command}: ${sig.category}${sig.knownBug ? ` (known bug ${sig.knownBug})` : ''}`,
      '',
      `- signature: \`${f.key}\``,
      `- count: ${f.count}; first seen ${secs(f.firstSeenMs)} into the campaign (sequence ${f.firstIndex})`,
      `- message: ${f.message}`,
      f.shrink
        ? `- shrink: ${f.shrink.status} (${f.unshrunkSteps} → ${f.shrink.steps.length} steps in ${secs(f.shrink.ms)})`
        : `- shrink: none (${f.unshrunkSteps} steps, not saved)`,
      `- case: ${f.shrink?.case ?? '(not saved)'}; script: ${f.shrink?.script ?? '(none)'}`,
      '',
    );
    if (f.shrink && f.shrink.steps.length > 0)
      out.push(
        '```',
        ...f.shrink.steps.slice(0, 60),
        ...(f.shrink.steps.length > 60 ? ['…'] : []),
        '```',
        '',
      );
  }
  out.push('## Known bugs met', '');
  out.push(
    r.knownBugs.length === 0
      ? 'None.'
      : table(
          ['known bug', 'signature', 'count'],
          r.knownBugs.map((k) => [k.id, k.key, k.count]),
        ),
  );
  out.push('', '## Engine code coverage', '');
  if (!r.coverage) out.push('Not collected.');
  else {
    const c = r.coverage;
    out.push(
      `Lines ${c.total.lines.covered}/${c.total.lines.total} (${pct(c.total.lines)}), branches ${c.total.branches.covered}/${c.total.branches.total} (${pct(c.total.branches)}).`,
      '',
      table(
        ['file', 'lines', 'branches'],
        Object.entries(c.files).map(([f, x]) => [
          f,
          `${x.lines.covered}/${x.lines.total} (${pct(x.lines)})`,
          `${x.branches.covered}/${x.branches.total} (${pct(x.branches)})`,
        ]),
      ),
    );
  }
  if (r.problems.length > 0) out.push('', '## Harness problems', '', ...r.problems.map((p) => `- ${p}`));
  if (id.notes.length > 0) out.push('', '## Notes', '', ...id.notes.map((n) => `- ${n}`));
  return `${out.join('\n')}\n`;
}

export function pct(x: { covered: number; total: number }): string {
  return x.total === 0 ? '–' : `${((100 * x.covered) / x.total).toFixed(1)}%`;
}

/** Write PATH.json, PATH.md and PATH.html (PATH given with or without `.json`). */
export async function writeReport(
  file: string,
  r: CampaignReport,
): Promise<{ json: string; md: string; html: string }> {
  const base = file.replace(/\.json$/, '');
  const paths = { json: `${base}.json`, md: `${base}.md`, html: `${base}.html` };
  const { reportHtml } = await import('./report-html.ts');
  fs.mkdirSync(path.dirname(paths.json), { recursive: true });
  fs.writeFileSync(paths.json, `${JSON.stringify(r, null, 2)}\n`);
  fs.writeFileSync(paths.md, reportMarkdown(r));
  fs.writeFileSync(paths.html, reportHtml(r));
  return paths;
}
