/**
 * `qcow2 fuzz`: campaigns, shard merging and corpus care.
 *
 *   qcow2 fuzz [--impl engine|qemu-io|mixed] [--seconds N | --runs N] [--seed S] [--jobs N]
 *              [--shard K/N | --shard K --shards N] [--report PATH.json] [--out DIR]
 *              [--max-steps N] [--shrink-seconds N] [--no-coverage]
 *   qcow2 fuzz --seed S --path P [--replay-path R]      replay (and shrink) one fast-check run
 *   qcow2 fuzz merge REPORT.json... [--report OUT.json]
 *   qcow2 fuzz corpus --minimize [DIR]
 *
 * Exit codes: 0 nothing new, 1 new failures, 2 the harness itself broke (or usage errors).
 */
import { opRateLine, sequenceRateLine } from './throughput.ts';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { runCampaign } from '../runner/campaign.ts';
import { isImplementationName, type ImplementationName } from '../adapters/registry.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { shardFrom, ShardSyntaxError, type Shard } from './seed-space.ts';
import { progressPrinter } from './progress.ts';
import { writeReport, shardText, type CampaignReport } from './report.ts';
import { runWorkerProcess } from './workers.ts';
import { FuzzTask } from './fuzz-task.ts';
import { ReaderOracle } from '../readers/reader-oracle.ts';
import { ReaderUnavailableError } from '../readers/reader.ts';
import { readerReportLines } from '../readers/report.ts';
import type { KnownBugsSetting } from '../known-bugs/index.ts';
import type { ReaderName } from '../readers/registry.ts';

export const FUZZ_USAGE = `usage: qcow2 fuzz [--impl engine|qemu-io|mixed] [--seconds N | --runs N] [--seed S] [--jobs N]
                  [--shard K/N | --shard K --shards N] [--report PATH.json] [--out DIR]
                  [--max-steps N] [--shrink-seconds N] [--no-coverage] [--readers libqcow]
                  [--known-bugs all|none]
       qcow2 fuzz --seed S --path P [--replay-path R] [--impl …]
       qcow2 fuzz merge REPORT.json... [--report OUT.json]
       qcow2 fuzz corpus --minimize [DIR]
  --jobs N      worker processes (default: the number of cores)
  --shard K/N   run the sequences i ≡ K (mod N) of the seed space (default K: $JOB_COMPLETION_INDEX,
                N: --shards or $JOB_COMPLETIONS)
  --report P    write P (JSON), P.md and P.html
  --known-bugs none   turn the known-bugs list (properties/known-bugs/) and its steering off
  --readers L   extra readers of the image at checkpoints (libqcow); their failures are theirs
exit codes: 0 nothing new, 1 new failures, 2 the harness itself broke`;

class UsageError extends Error {}

interface FuzzOptions {
  impl: ImplementationName;
  seconds?: number;
  runs?: number;
  seed: number;
  outDir: string;
  maxSteps: number;
  shrinkSeconds?: number;
  jobs: number;
  shard: Shard;
  report?: string;
  coverage: boolean;
  /** Extra readers (`--readers libqcow`). */
  readers: ReaderName[];
  /** `--known-bugs all|none`. */
  knownBugs: KnownBugsSetting;
}

function positiveInt(name: string, value: string | undefined, allowZero = false): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || (!allowZero && Number(value) <= 0))
    throw new UsageError(
      `--${name} needs a ${allowZero ? 'non-negative' : 'positive'} integer, got '${value}'`,
    );
  return Number(value);
}

function implOption(value: string | undefined): ImplementationName {
  if (value === undefined) return 'engine';
  if (!isImplementationName(value))
    throw new UsageError(`--impl must be engine, qemu-io or mixed, got '${value}'`);
  return value;
}

export async function runFuzzCommand(argv: string[]): Promise<number> {
  if (argv[0] === '--worker') {
    const code = await runWorkerProcess();
    // Exit now (V8 writes the worker's coverage on exit), whatever handles are left.
    process.exit(code);
  }
  if (argv[0] === 'merge') return (await import('./merge.ts')).runMergeCli(argv.slice(1));
  if (argv[0] === 'corpus') return (await import('./corpus-care.ts')).runCorpusCli(argv.slice(1));

  let values;
  try {
    const parsed = parseArgs({
      args: argv,
      options: {
        impl: { type: 'string' },
        seconds: { type: 'string' },
        runs: { type: 'string' },
        seed: { type: 'string' },
        out: { type: 'string' },
        'max-steps': { type: 'string' },
        'shrink-seconds': { type: 'string' },
        jobs: { type: 'string', short: 'j' },
        shard: { type: 'string' },
        shards: { type: 'string' },
        report: { type: 'string' },
        'no-coverage': { type: 'boolean' },
        path: { type: 'string' },
        'replay-path': { type: 'string' },
        readers: { type: 'string' },
        'known-bugs': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    values = parsed.values;
    if (values.readers !== undefined) ReaderOracle.parseNames(values.readers);
    const kb = values['known-bugs'];
    if (kb !== undefined && kb !== 'all' && kb !== 'none')
      throw new UsageError(`--known-bugs must be all or none, got '${kb}'`);
    if (values.help) {
      process.stdout.write(`${FUZZ_USAGE}\n`);
      return 0;
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    if (values.seconds !== undefined && values.runs !== undefined)
      throw new UsageError('--seconds and --runs exclude each other');
    if (values.seed !== undefined && !/^-?\d+$/.test(values.seed))
      throw new UsageError(`--seed needs an integer, got '${values.seed}'`);
    if (values.path !== undefined && values.seed === undefined)
      throw new UsageError('--path needs the --seed it came from');
  } catch (e) {
    process.stderr.write(`qcow2 fuzz: ${e instanceof Error ? e.message : String(e)}\n${FUZZ_USAGE}\n`);
    return 2;
  }

  let opts: FuzzOptions;
  try {
    const shards = positiveInt('shards', values.shards);
    opts = {
      impl: implOption(values.impl),
      seconds: positiveInt('seconds', values.seconds),
      runs: positiveInt('runs', values.runs),
      seed:
        values.seed !== undefined ? Number(values.seed) | 0 : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0,
      outDir: values.out ?? 'fuzz-out',
      maxSteps: positiveInt('max-steps', values['max-steps']) ?? 300,
      shrinkSeconds: positiveInt('shrink-seconds', values['shrink-seconds']),
      jobs: positiveInt('jobs', values.jobs, true) ?? os.availableParallelism(),
      shard: shardFrom(values.shard, shards),
      report: values.report,
      coverage: values['no-coverage'] !== true && values.report !== undefined,
      readers: values.readers !== undefined ? ReaderOracle.parseNames(values.readers) : [],
      knownBugs: values['known-bugs'] === 'none' ? 'none' : 'all',
    };
  } catch (e) {
    if (!(e instanceof UsageError || e instanceof ShardSyntaxError)) throw e;
    process.stderr.write(`qcow2 fuzz: ${e.message}\n${FUZZ_USAGE}\n`);
    return 2;
  }

  try {
    await requireQemuTools();
  } catch (e) {
    process.stderr.write(
      `qcow2 fuzz: the qemu cross-checks need qemu-img and qemu-io: ${(e as Error).message}\n`,
    );
    return 2;
  }

  if (values.path !== undefined) return replayPath(opts, values.path, values['replay-path']);

  const printer = progressPrinter(process.stderr, `fuzz ${opts.impl}`);
  process.stderr.write(
    `qcow2 fuzz --impl ${opts.impl} --seed ${opts.seed} --jobs ${opts.jobs} --shard ${opts.shard.index}/${opts.shard.count}` +
      `${opts.runs !== undefined ? ` --runs ${opts.runs}` : ` --seconds ${opts.seconds ?? 60}`} (max ${opts.maxSteps} steps per sequence)\n`,
  );
  let report: CampaignReport;
  try {
    report = await runCampaign({
      task: {
        name: 'fuzz',
        options: {
          impl: opts.impl,
          seed: opts.seed,
          maxSteps: opts.maxSteps,
          outDir: opts.outDir,
          knownBugs: opts.knownBugs,
          ...(opts.readers.length ? { readers: opts.readers } : {}),
        },
      },
      seed: opts.seed,
      // The budget counts from the process's start (module loading and tool checks included).
      startedAt: Math.round(performance.timeOrigin),
      shard: opts.shard,
      runs: opts.runs,
      seconds: opts.seconds,
      jobs: opts.jobs,
      outDir: opts.outDir,
      shrinkSeconds: opts.shrinkSeconds,
      coverage: opts.coverage,
      onProgress: (p) => printer.update(p),
      reportOptions: {
        runs: opts.runs ?? null,
        seconds: opts.runs === undefined ? (opts.seconds ?? 60) : null,
        jobs: opts.jobs,
        maxSteps: opts.maxSteps,
        shrinkSeconds: opts.shrinkSeconds ?? 120,
        out: opts.outDir,
        readers: opts.readers,
        knownBugs: opts.knownBugs,
      },
    });
  } catch (e) {
    printer.done();
    process.stderr.write(
      `qcow2 fuzz: could not run: ${e instanceof ReaderUnavailableError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    return 2;
  }
  printer.done();
  let written: { json: string; md: string; html: string } | undefined;
  if (opts.report) {
    try {
      written = await writeReport(opts.report, report);
    } catch (e) {
      process.stderr.write(`qcow2 fuzz: could not write the report: ${(e as Error).message}\n`);
      return 2;
    }
  }
  process.stdout.write(summary(report, written));
  return report.exitCode;
}

/**
 * The harness's own throughput, as `npm run bench:harness` reports it (campaign/throughput.ts):
 * the data path's model-checked operations per second, per job and machine-wide, with the load.
 */
function throughputLines(r: CampaignReport): string[] {
  return [`data path: ${opRateLine(r, { avg: os.loadavg(), cores: os.availableParallelism() })}`];
}

/** The closing summary on stdout. */
export function summary(r: CampaignReport, written?: { json: string; md: string; html: string }): string {
  const secs = r.timing.elapsedMs / 1000;
  const v = r.volume;
  const lines = [
    `sequences: ${v.sequences} in ${secs.toFixed(1)}s with ${r.timing.jobs} job(s) (${(v.sequences / Math.max(secs, 1e-3)).toFixed(2)} sequences/s with the qemu cross-checks), shard ${shardText(r.identity.shards)}`,
    `operations: ${v.operations} (${Math.round(v.operations / Math.max(secs, 1e-3))} ops/s overall)`,
    ...throughputLines(r),
    // (the figure `npm run bench:harness` prints for this configuration: campaign/throughput.ts)
    `throughput: ${sequenceRateLine(r)}`,
    `failures: ${r.failures.length} distinct (${r.failures.reduce((n, f) => n + f.count, 0)} failing sequences), ${r.knownBugs.length} known bug(s)`,
    `seed: ${r.identity.seed}`,
  ];
  for (const f of r.failures) {
    lines.push(
      `  [${f.count}×] ${f.signature.knownBug ? `known bug ${f.signature.knownBug} (properties/known-bugs/${f.signature.knownBug}.json)` : f.signature.reader ? 'reader' : 'NEW'}: ${f.key}`,
      `    ${f.message.slice(0, 300)}`,
      f.shrink
        ? `    shrink ${f.shrink.status}: ${f.unshrunkSteps} → ${f.shrink.steps.length} steps; case: ${f.shrink.case ?? '(not saved)'}`
        : `    not shrunk, not saved (${f.unshrunkSteps} steps)`,
    );
  }
  lines.push(...readerReportLines(r.readers ?? [], []));
  for (const p of r.problems) lines.push(`harness problem: ${p}`);
  if (r.coverage)
    lines.push(
      `engine coverage: lines ${r.coverage.total.lines.covered}/${r.coverage.total.lines.total}, branches ${r.coverage.total.branches.covered}/${r.coverage.total.branches.total}`,
    );
  if (written) lines.push(`report: ${written.json}, ${written.md}, ${written.html}`);
  return `${lines.join('\n')}\n`;
}

/** `--seed S --path P`: one fast-check run, in this process, shrunk and saved as before. */
async function replayPath(opts: FuzzOptions, path: string, replay: string | undefined): Promise<number> {
  const task = new FuzzTask({
    impl: opts.impl,
    seed: opts.seed,
    maxSteps: opts.maxSteps,
    replayPath: replay,
    readers: opts.readers,
    knownBugs: opts.knownBugs,
  });
  try {
    const res = await task.shrinkPath(
      opts.seed,
      path,
      Date.now() + (opts.shrinkSeconds ?? 120) * 1000,
      opts.outDir,
    );
    if (res.status === 'none' && !res.casePath) {
      process.stdout.write(`seed ${opts.seed} path ${path}: passes\n`);
      return 0;
    }
    process.stdout.write(
      `seed ${opts.seed} path ${path}: fails: ${res.knownBug ? `known bug ${res.knownBug} (properties/known-bugs/${res.knownBug}.json): ` : ''}${res.message}\n  shrink ${res.status} to ${res.steps.length} steps; case: ${res.casePath ?? '(not saved)'}\n`,
    );
    return 1;
  } finally {
    await task.close();
  }
}
