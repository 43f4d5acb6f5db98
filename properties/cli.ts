/**
 * `qcow2 fuzz` and `qcow2 repro` (called by the CLI in src/cli/).
 *
 *   qcow2 fuzz …   (campaigns, merge, corpus: properties/campaign/fuzz-cli.ts)
 *   qcow2 repro CASE.json [--impl engine|qemu-io|mixed]
 *
 * Exit codes: 0 nothing failed / the case passes, 1 a failure found / the case still fails,
 * 2 usage or environment errors.
 */
import { parseArgs } from 'node:util';
import { runFuzzCommand } from './campaign/fuzz-cli.ts';
import { isImplementationName, type ImplementationName } from './adapters/registry.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';
import { loadCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { matchKnownBug } from './known-bugs/index.ts';
import { REPRO_IMAGE_USAGE, runReproImage } from './repro/repro-image.ts';
import * as fs from 'node:fs';

/** What a path holds: a case file (JSON), a qcow2 image (magic QFI\xfb), or neither. */
function pathKind(file: string): 'case' | 'image' | 'missing' | 'other' {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      head = Buffer.alloc(4);
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return 'missing';
  }
  if (head.readUInt32BE(0) === 0x514649fb) return 'image';
  if (head.toString('latin1').trimStart().startsWith('{')) return 'case';
  return 'other';
}

const REPRO_USAGE = `usage: qcow2 repro CASE.json [--impl engine|qemu-io|mixed]\n       ${REPRO_IMAGE_USAGE.slice('usage: '.length)}`;

class UsageError extends Error {}

function implOption(value: string | undefined, fallback: ImplementationName): ImplementationName {
  if (value === undefined) return fallback;
  if (!isImplementationName(value))
    throw new UsageError(`--impl must be engine, qemu-io or mixed, got '${value}'`);
  return value;
}

export async function runFuzzCli(argv: string[]): Promise<number> {
  return runFuzzCommand(argv);
}

export async function runReproCli(argv: string[]): Promise<number> {
  let target: string | undefined;
  try {
    // Both forms' options, to find the operand; each form checks its own options after.
    target = parseArgs({
      args: argv,
      options: Object.fromEntries(
        ['impl', 'seconds', 'seed', 'jobs', 'out', 'max-steps'].map((o) => [o, { type: 'string' as const }]),
      ),
      allowPositionals: true,
      strict: false,
    }).positionals[0];
  } catch {
    target = undefined;
  }
  const kind = target === undefined ? 'missing' : pathKind(target);
  if (target !== undefined && kind !== 'case') {
    if (kind === 'missing') {
      process.stderr.write(`qcow2 repro: cannot open '${target}'\n${REPRO_USAGE}\n`);
      return 2;
    }
    if (kind === 'other') {
      process.stderr.write(
        `qcow2 repro: '${target}' is neither a case file (JSON) nor a qcow2 image\n${REPRO_USAGE}\n`,
      );
      return 2;
    }
    try {
      await requireQemuTools();
      return await runReproImage(argv);
    } catch (e) {
      process.stderr.write(`qcow2 repro: ${e instanceof Error ? e.message : String(e)}\n${REPRO_USAGE}\n`);
      return 2;
    }
  }
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
    // labelled as the campaign labels it (properties/known-bugs/, the list enabled)
    const known = d && matchKnownBug(d, outcome.steps, impl ?? caseFile.impl, caseFile.image.layout);
    if (known) out.push(`  known bug ${known.id} (properties/known-bugs/${known.id}.json)`);
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
