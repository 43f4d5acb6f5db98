/**
 * `qcow2 fuzz` and `qcow2 repro` (called by the CLI in src/cli/).
 *
 *   qcow2 fuzz [--impl engine|qemu-io|mixed] [--seconds N | --runs N] [--seed S] [--out DIR]
 *              [--max-steps N] [--shrink-seconds N] [--path P [--replay-path R]]
 *   qcow2 repro CASE.json [--impl engine|qemu-io|mixed]
 *
 * Exit codes: 0 nothing failed / the case passes, 1 a failure found / the case still fails,
 * 2 usage or environment errors.
 */
import { parseArgs } from 'node:util';
import { runCampaign, type Progress } from './runner/campaign.ts';
import { isImplementationName, type ImplementationName } from './adapters/registry.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { loadCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { setKnownBugs } from './known-bugs/index.ts';

const FUZZ_USAGE =
  'usage: qcow2 fuzz [--impl engine|qemu-io|mixed] [--seconds N | --runs N] [--seed S] [--out DIR] [--max-steps N] [--shrink-seconds N] [--path P [--replay-path R]] [--known-bugs all|none]';
const REPRO_USAGE = 'usage: qcow2 repro CASE.json [--impl engine|qemu-io|mixed]';

class UsageError extends Error {}

function positiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) <= 0)
    throw new UsageError(`--${name} needs a positive integer, got '${value}'`);
  return Number(value);
}

function implOption(value: string | undefined, fallback: ImplementationName): ImplementationName {
  if (value === undefined) return fallback;
  if (!isImplementationName(value))
    throw new UsageError(`--impl must be engine, qemu-io or mixed, got '${value}'`);
  return value;
}

function progressLine(p: Progress, impl: string): string {
  const secs = p.elapsedMs / 1000;
  const rate = secs > 0 ? Math.round(p.operations / secs) : 0;
  return `fuzz ${impl}: ${p.runs} runs, ${p.operations} ops (${rate} ops/s), ${p.failures} failures${p.shrinking ? ' — shrinking' : ''}, ${secs.toFixed(0)}s`;
}

export async function runFuzzCli(argv: string[]): Promise<number> {
  let opts;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        impl: { type: 'string' },
        seconds: { type: 'string' },
        runs: { type: 'string' },
        seed: { type: 'string' },
        out: { type: 'string' },
        'max-steps': { type: 'string' },
        'shrink-seconds': { type: 'string' },
        path: { type: 'string' },
        'replay-path': { type: 'string' },
        'known-bugs': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${FUZZ_USAGE}\n`);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if (values.seconds !== undefined && values.runs !== undefined)
      throw new UsageError('--seconds and --runs exclude each other');
    if (values.seed !== undefined && !/^-?\d+$/.test(values.seed))
      throw new UsageError(`--seed needs an integer, got '${values.seed}'`);
    if (values.path !== undefined && values.seed === undefined)
      throw new UsageError('--path needs the --seed it came from');
    if (
      values['known-bugs'] !== undefined &&
      values['known-bugs'] !== 'all' &&
      values['known-bugs'] !== 'none'
    )
      throw new UsageError(`--known-bugs must be all or none, got '${values['known-bugs']}'`);
    setKnownBugs(values['known-bugs'] === 'none' ? 'none' : 'all');
    opts = {
      impl: implOption(values.impl, 'engine'),
      seconds: positiveInt('seconds', values.seconds),
      runs: positiveInt('runs', values.runs),
      seed:
        values.seed !== undefined ? Number(values.seed) | 0 : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0,
      outDir: values.out ?? 'fuzz-out',
      maxSteps: positiveInt('max-steps', values['max-steps']) ?? 300,
      shrinkSeconds: positiveInt('shrink-seconds', values['shrink-seconds']),
      path: values.path,
      replayPath: values['replay-path'],
    };
  } catch (e) {
    process.stderr.write(`qcow2 fuzz: ${e instanceof Error ? e.message : String(e)}\n${FUZZ_USAGE}\n`);
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

  const tty = process.stderr.isTTY === true;
  let lastPlain = Date.now();
  const onProgress = (p: Progress): void => {
    if (tty) process.stderr.write(`\r\x1b[K${progressLine(p, opts.impl)}`);
    else if (Date.now() - lastPlain >= 10_000) {
      lastPlain = Date.now();
      process.stderr.write(`${progressLine(p, opts.impl)}\n`);
    }
  };
  process.stderr.write(
    `qcow2 fuzz --impl ${opts.impl} --seed ${opts.seed} (max ${opts.maxSteps} steps per sequence)\n`,
  );

  let result;
  try {
    result = await runCampaign({ ...opts, onProgress });
  } catch (e) {
    if (tty) process.stderr.write('\n');
    process.stderr.write(
      `qcow2 fuzz: could not run: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    return 2;
  }
  if (tty) process.stderr.write('\n');

  const secs = result.elapsedMs / 1000;
  const lines = [
    `runs: ${result.runs} sequences in ${secs.toFixed(1)}s (${(result.runs / Math.max(secs, 1e-3)).toFixed(2)} sequences/s with the qemu cross-checks)`,
    `operations: ${result.operations} (${Math.round(result.operations / Math.max(secs, 1e-3))} ops/s overall; ${Math.round(result.exploreOperations / Math.max(result.exploreMs / 1000, 1e-3))} model-checked ops/s without the oracles)`,
    `failures: ${result.cases.length}`,
    `seed: ${result.seed}`,
  ];
  for (const c of result.cases) {
    lines.push(
      c.file.knownBug
        ? `  known bug ${c.file.knownBug} (properties/known-bugs/${c.file.knownBug}.json): ${c.file.failure.message}`
        : `  NEW: ${c.file.failure.message}`,
      `  shrunk to ${c.file.steps.length} steps; seed ${String(c.file.seed)}, path ${String(c.file.path)}, replayPath ${String(c.file.replayPath)}`,
      `  case: ${c.savedAt ?? '(not saved)'}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return result.cases.length > 0 ? 1 : 0;
}

export async function runReproCli(argv: string[]): Promise<number> {
  let file: string;
  let impl: ImplementationName | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { impl: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${REPRO_USAGE}\n`);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('exactly one case file');
    file = positionals[0];
    impl = values.impl === undefined ? undefined : implOption(values.impl, 'engine');
  } catch (e) {
    process.stderr.write(`qcow2 repro: ${e instanceof Error ? e.message : String(e)}\n${REPRO_USAGE}\n`);
    return 2;
  }
  let caseFile;
  try {
    caseFile = loadCase(file);
    await requireQemuTools();
  } catch (e) {
    process.stderr.write(`qcow2 repro: ${(e as Error).message}\n`);
    return 2;
  }
  const outcome = await replayCase(caseFile, impl ?? caseFile.impl);
  const out = [`case: ${file} (${caseFile.steps.length} steps, impl ${impl ?? caseFile.impl})`];
  if (caseFile.qemuDefect) out.push(`marked as a QEMU defect: ${caseFile.explanation ?? ''}`);
  if (outcome.passed) out.push('passes: the implementation matches the model');
  else {
    const d = outcome.divergence?.details;
    out.push(`still fails: ${outcome.divergence?.message ?? ''}`);
    if (d)
      out.push(
        `  step ${d.stepIndex}: ${d.step}`,
        `  expected: ${JSON.stringify(d.expected)}`,
        `  observed: ${JSON.stringify(d.observed)}`,
      );
    if (d?.check) out.push(`  qemu-img check: ${JSON.stringify(d.check)}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return outcome.passed ? 0 : 1;
}
