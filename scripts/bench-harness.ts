/**
 * `npm run bench:harness`: the harness's own throughput, per implementation, measured here and now
 * (never hard-coded):
 *
 * - model-checked operations per second outside the oracles (generated sequences without `check`
 *   and qemu turns, each operation performed on the implementation and the model and every read
 *   compared exactly);
 * - complete sequences per second with every qemu-img oracle (check, info, convert, snapshots,
 *   reopen-and-read) at the end of each;
 * - for qemu-io, qemu-io's own speed on the same operations, fed to one qemu-io process alone
 *   (no model, no comparisons), and the harness's ratio to it.
 *
 * Usage: tsx scripts/bench-harness.ts [--seconds N] (per measurement, default 20)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { implementation, type ImplementationName } from '../properties/adapters/registry.ts';
import { imageLayoutArbitrary } from '../properties/arbitraries/image-layout.ts';
import { commandSequenceArbitrary } from '../properties/arbitraries/command-sequence.ts';
import { supportedKinds, type CommandKind } from '../properties/arbitraries/command-kinds.ts';
import { RunContext } from '../properties/runner/run-context.ts';
import { finalOracles } from '../properties/oracles/image-oracles.ts';
import { parseStep, writeData, formatStep } from '../properties/steps.ts';
import { stampFileName } from '../properties/model/stamp.ts';
import { QEMU_IO, qemuImgCreate } from '../properties/qemu/qemu-img.ts';

const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 20;

interface Measure {
  ops: number;
  ms: number;
  /** Time in the operation loop alone (no image creation, no disposal). */
  loopMs: number;
  sequences: number;
  steps: string[][];
}

async function measure(impl: ImplementationName, withOracles: boolean, seed: number): Promise<Measure> {
  const im = implementation(impl);
  const caps = await im.capabilities();
  // outside the oracles: no `check` steps and no qemu turns (a qemu-io process per turn)
  const kinds = supportedKinds(caps).filter(
    (k: CommandKind) => withOracles || (k !== 'check' && k !== 'qemu-turn'),
  );
  const arb = fc.tuple(imageLayoutArbitrary(caps), commandSequenceArbitrary(kinds, { maxCommands: 50 }));
  const result: Measure = { ops: 0, ms: 0, loopMs: 0, sequences: 0, steps: [] };
  const deadline = Date.now() + SECONDS * 1000;
  let s = seed;
  while (Date.now() < deadline) {
    const [[layout, commands]] = fc.sample(arb, { seed: s++, numRuns: 1 });
    const started = performance.now();
    const ctx = await RunContext.start(im, layout);
    ctx.pipeline = true;
    try {
      const loopStarted = performance.now();
      try {
        await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
      } finally {
        result.loopMs += performance.now() - loopStarted;
      }
      if (withOracles) await finalOracles(ctx);
    } catch (e) {
      process.stderr.write(`(${impl}: a sequence failed, counted as run: ${String(e).slice(0, 160)})\n`);
    } finally {
      await ctx.dispose();
    }
    result.ms += performance.now() - started;
    result.ops += ctx.operations;
    result.sequences += 1;
    result.steps.push([...ctx.steps]);
  }
  await im.shutdown?.();
  return result;
}

/** qemu-io alone: the data steps of the measured runs, piped into one qemu-io process per sequence. */
function qemuIoAlone(steps: string[][]): { ops: number; ms: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-qemu-io-'));
  let ops = 0;
  let ms = 0;
  try {
    for (const seq of steps) {
      const lines: string[] = [];
      for (const line of seq) {
        let step;
        try {
          step = parseStep(line);
        } catch {
          continue;
        }
        if (step.kind === 'write' || step.kind === 'write-compressed') {
          if (step.stamp !== undefined)
            fs.writeFileSync(path.join(dir, stampFileName(step.stamp)), writeData(step));
          lines.push(formatStep(step).replace(/ -s (w\d+\.bin)/, ` -s ${dir}/$1`));
        } else if (step.kind === 'read') lines.push(`read -q ${step.offset} ${step.length}`);
        else if (step.kind === 'write-zeroes' || step.kind === 'discard' || step.kind === 'flush')
          lines.push(formatStep(step));
      }
      if (lines.length === 0) continue;
      const img = path.join(dir, 'alone.qcow2');
      spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, String(64 << 20)]);
      const input = `${lines.map((l) => l.replace(/^(write|read|discard)( |$)/, '$1 -q$2')).join('\n')}\nquit\n`;
      const t0 = performance.now();
      spawnSync(QEMU_IO, ['-f', 'qcow2', img], { input, maxBuffer: 1 << 28 });
      ms += performance.now() - t0;
      ops += lines.length;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { ops, ms };
}

function rate(n: number, ms: number): string {
  return (n / Math.max(ms / 1000, 1e-9)).toFixed(n / Math.max(ms / 1000, 1e-9) >= 100 ? 0 : 2);
}

async function main(): Promise<void> {
  void qemuImgCreate; // (qemu-img is required: the oracles use it)
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const rows: string[][] = [];
  for (const impl of ['engine', 'qemu-io'] as const) {
    const bare = await measure(impl, false, 1);
    const full = await measure(impl, true, 1000);
    rows.push([
      impl,
      `${rate(bare.ops, bare.ms)} ops/s incl. create; ${rate(bare.ops, bare.loopMs)} in the op loop (${bare.ops} ops, ${bare.sequences} seq)`,
      `${rate(full.sequences, full.ms)} seq/s (${full.sequences} seq, ${full.ops} ops)`,
      impl === 'engine' ? '≥ 5000 ops/s; ≥ 10 seq/s' : '≥ 1000 ops/s',
    ]);
    if (impl === 'qemu-io') {
      const alone = qemuIoAlone(bare.steps);
      rows.push([
        'qemu-io alone',
        `${rate(alone.ops, alone.ms)} ops/s (${alone.ops} ops, same data steps)`,
        '',
        `harness/alone = ${(bare.ops / bare.ms / (alone.ops / Math.max(alone.ms, 1e-9))).toFixed(3)}`,
      ]);
    }
  }
  const header = [
    'implementation',
    'model-checked ops/s (no oracles)',
    'sequences/s (all oracles)',
    'target',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write(
    [
      `bench:harness — ${SECONDS}s per measurement; nproc ${os.cpus().length}; load ${load}; sequences of up to 50 commands`,
      fmt(header),
      `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
      ...rows.map(fmt),
    ].join('\n') + '\n',
  );
}

await main();
