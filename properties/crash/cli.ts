/**
 * `qcow2 crashtest` (called by the CLI in src/cli/main.ts):
 *
 *   qcow2 crashtest [--impl engine|qemu-io] [--seconds N | --runs N] [--seed S] [--jobs N]
 *                   [--out DIR] [--report PATH.json] [--max-steps N] [--states N] [--shrink-seconds N] [--shrink-runs N]
 *
 * `--jobs N` runs N campaigns side by side in this process (seeds S, S+1, …), each with its own
 * qemu-img check worker. Exit codes: 0 no failure, 1 a failure found (case written), 2 usage or
 * environment errors.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import {
  runCrashtest,
  type CrashProgress,
  type CrashtestOptions,
  type CrashtestResult,
} from './crashtest.ts';
import type { CrashImplName } from './record.ts';
import { runFaultCampaign } from './faults.ts';

const USAGE =
  'usage: qcow2 crashtest [--impl engine|qemu-io] [--seconds N | --runs N] [--seed S] [--jobs N] [--out DIR] [--report PATH.json] [--max-steps N] [--states N] [--shrink-seconds N] [--shrink-runs N] [--faults]';

/** `--faults`: fault-injection scenarios instead of crash states (`--runs` scenarios or `--seconds`). */
async function runFaults(
  opts: Pick<CrashtestOptions, 'impl' | 'seed' | 'seconds' | 'runs'>,
  report: string | undefined,
): Promise<number> {
  process.stderr.write(`qcow2 crashtest --faults --impl ${opts.impl} --seed ${opts.seed}\n`);
  const r = await runFaultCampaign({
    impl: opts.impl,
    seed: opts.seed,
    count: opts.runs,
    seconds: opts.runs ? undefined : opts.seconds,
    startedAt: Math.round(performance.timeOrigin),
  });
  const lines = [
    `fault scenarios: ${r.scenarios} in ${(r.elapsedMs / 1000).toFixed(1)}s (${r.injected} with the fault injected, ${r.notReached} whose operation never reached the point)`,
    `failures: ${r.failures.length}`,
    `seed: ${opts.seed}`,
    ...r.failures.map((f) => `  ${f.category}: ${f.detail}\n    scenario: ${f.scenario}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (report) writeReportFile(report, { faults: { impl: opts.impl, seed: opts.seed, ...r } });
  return r.failures.length > 0 ? 1 : 0;
}

/** The report's JSON, its directory made first (a campaign without failures never made `--out`). */
function writeReportFile(report: string, value: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(report)), { recursive: true });
  fs.writeFileSync(report, `${JSON.stringify(value, null, 2)}\n`);
}

class UsageError extends Error {}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) <= 0)
    throw new UsageError(`--${name} needs a positive integer, got '${value}'`);
  return Number(value);
}

function sumRepeats(all: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of all) for (const [k, n] of Object.entries(r)) out[k] = (out[k] ?? 0) + n;
  return out;
}

function rate(n: number, ms: number): string {
  return (n / Math.max(ms / 1000, 1e-3)).toFixed(1);
}

function line(p: CrashProgress, impl: string): string {
  return `crashtest ${impl}: ${p.sequences} sequences, ${p.operations} ops, ${p.states} crash states (${rate(p.states, p.elapsedMs)}/s), ${p.qemuChecks} qemu-img checks, ${p.failures} failures${p.shrinking ? ' — shrinking' : ''}, ${(p.elapsedMs / 1000).toFixed(0)}s`;
}

export async function runCrashtestCli(argv: string[]): Promise<number> {
  let opts;
  let jobs = 1;
  let report: string | undefined;
  let faults = false;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        impl: { type: 'string' },
        seconds: { type: 'string' },
        runs: { type: 'string' },
        seed: { type: 'string' },
        jobs: { type: 'string' },
        out: { type: 'string' },
        report: { type: 'string' },
        'max-steps': { type: 'string' },
        states: { type: 'string' },
        'shrink-seconds': { type: 'string' },
        'shrink-runs': { type: 'string' },
        faults: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const impl = values.impl ?? 'engine';
    if (impl !== 'engine' && impl !== 'qemu-io')
      throw new UsageError(`--impl must be engine or qemu-io, got '${impl}'`);
    if (values.seconds !== undefined && values.runs !== undefined)
      throw new UsageError('--seconds and --runs exclude each other');
    if (values.seed !== undefined && !/^-?\d+$/.test(values.seed))
      throw new UsageError(`--seed needs an integer, got '${values.seed}'`);
    jobs = positiveInt('jobs', values.jobs) ?? 1;
    report = values.report;
    opts = {
      impl: impl as CrashImplName,
      seconds: positiveInt('seconds', values.seconds),
      runs: positiveInt('runs', values.runs),
      seed:
        values.seed !== undefined ? Number(values.seed) | 0 : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0,
      outDir: values.out ?? 'crash-out',
      maxSteps: positiveInt('max-steps', values['max-steps']),
      statesPerSequence: positiveInt('states', values.states),
      shrinkSeconds: positiveInt('shrink-seconds', values['shrink-seconds']),
      shrinkRuns: positiveInt('shrink-runs', values['shrink-runs']),
    };
    if (opts.seconds === undefined && opts.runs === undefined) opts.seconds = 60;
    faults = values.faults === true;
  } catch (e) {
    process.stderr.write(`qcow2 crashtest: ${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    return 2;
  }
  try {
    await requireQemuTools();
  } catch (e) {
    process.stderr.write(`qcow2 crashtest: the oracle needs qemu-img and qemu-io: ${(e as Error).message}\n`);
    return 2;
  }
  if (faults)
    return runFaults({ impl: opts.impl, seed: opts.seed, seconds: opts.seconds, runs: opts.runs }, report);
  process.stderr.write(
    `qcow2 crashtest --impl ${opts.impl} --seed ${opts.seed}${jobs > 1 ? ` --jobs ${jobs}` : ''}\n`,
  );
  const tty = process.stderr.isTTY === true;
  const latest: CrashProgress[] = [];
  let lastPlain = Date.now();
  const show = (): void => {
    const sum = latest.reduce(
      (a, p) => ({
        sequences: a.sequences + p.sequences,
        operations: a.operations + p.operations,
        states: a.states + p.states,
        qemuChecks: a.qemuChecks + p.qemuChecks,
        failures: a.failures + p.failures,
        elapsedMs: Math.max(a.elapsedMs, p.elapsedMs),
        shrinking: a.shrinking || p.shrinking,
      }),
      { sequences: 0, operations: 0, states: 0, qemuChecks: 0, failures: 0, elapsedMs: 0, shrinking: false },
    );
    if (tty) process.stderr.write(`\r\x1b[K${line(sum, opts.impl)}`);
    else if (Date.now() - lastPlain >= 10_000) {
      lastPlain = Date.now();
      process.stderr.write(`${line(sum, opts.impl)}\n`);
    }
  };
  let results: CrashtestResult[];
  try {
    results = await Promise.all(
      Array.from({ length: jobs }, (_, j) =>
        runCrashtest({
          ...opts,
          seed: (opts.seed + j * 1000) | 0,
          // `--seconds` counts from the process's start (module loading and tool checks included).
          startedAt: Math.round(performance.timeOrigin),
          onProgress: (p) => {
            latest[j] = p;
            show();
          },
        }),
      ),
    );
  } catch (e) {
    if (tty) process.stderr.write('\n');
    process.stderr.write(
      `qcow2 crashtest: could not run: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    return 2;
  }
  if (tty) process.stderr.write('\n');
  const total = (
    k: 'sequences' | 'operations' | 'states' | 'qemuChecks' | 'checkCacheHits' | 'qemuReads' | 'unreplayable',
  ): number => results.reduce((a, r) => a + r[k], 0);
  const elapsedMs = Math.max(...results.map((r) => r.elapsedMs));
  const judgeMs = results.reduce((a, r) => a + r.judgeMs, 0);
  const failures = results.flatMap((r) => r.failuresDetail);
  const summary = {
    impl: opts.impl,
    seed: opts.seed,
    jobs,
    seconds: elapsedMs / 1000,
    sequences: total('sequences'),
    operations: total('operations'),
    crashStates: total('states'),
    crashStatesPerSecond: Number(rate(total('states'), elapsedMs)),
    crashStatesPerJudgingSecond: Number(rate(total('states'), judgeMs / jobs)),
    qemuImgChecks: total('qemuChecks'),
    statesSharingCheckedMetadata: total('checkCacheHits'),
    qemuReads: total('qemuReads'),
    /** qemu-io sequences not judged: overlapping aio requests in flight, the log does not replay (crashtest.ts). */
    unreplayableSequences: total('unreplayable'),
    stepsByKind: sumRepeats(results.map((r) => r.stepKinds)),
    failures,
    repeats: sumRepeats(results.map((r) => r.repeats)),
  };
  const lines = [
    `crash states: ${summary.crashStates} checked in ${summary.seconds.toFixed(1)}s (${summary.crashStatesPerSecond} states/s overall, ${summary.crashStatesPerJudgingSecond} states/s while judging)`,
    `  ${summary.qemuImgChecks} qemu-img check runs (${summary.statesSharingCheckedMetadata} states shared the metadata of a state already checked), ${summary.qemuReads} qemu-img reads`,
    `sequences: ${summary.sequences} (${summary.operations} operations)${summary.unreplayableSequences > 0 ? `, ${summary.unreplayableSequences} not judged: overlapping aio requests in flight, the log (blklogwrites: submission order) does not replay to the image` : ''}`,
    `  steps by kind: ${Object.entries(summary.stepsByKind)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
    `failures: ${failures.length}`,
    `seed: ${opts.seed}`,
  ];
  for (const [sig, n] of Object.entries(summary.repeats))
    lines.push(`  ${n} sequences had crash states failing with ${sig} (reported before or a known finding)`);
  for (const f of failures)
    lines.push(
      ...(f.knownFinding ? [`  known finding ${f.knownFinding} (properties/crash/known-findings.ts)`] : []),
      `  ${f.signature}: ${f.message.slice(0, 300)}`,
      `  shrunk to ${f.steps} steps; case: ${f.case ?? '(not saved)'}`,
    );
  process.stdout.write(`${lines.join('\n')}\n`);
  if (report) writeReportFile(report, { crashtest: summary });
  // (known findings are reported and labelled; only new failures fail the campaign)
  return failures.some((f) => !f.knownFinding) ? 1 : 0;
}
