/**
 * Where a complete sequence's time goes (the engine in process, every oracle on): sequences of up
 * to 50 commands from the whole catalogue, one at a time in this process (`bench:harness`'s
 * second column runs a real campaign instead), each phase timed (wall, this process's CPU and the
 * CPU of the tools it ran), the oracles one at a time (or side by side with `--together`, as
 * campaigns run them), and every tool counted by subcommand (runs per sequence, wall time per
 * run). `--runs N` runs exactly the seeds S … S+N−1, so that two versions compare on the same
 * sequences. A measuring aid for the oracles' cost, not a benchmark.
 *
 * Usage: tsx scripts/profile-sequences.ts [--seconds N | --runs N] [--seed S] [--together]
 */
import * as os from 'node:os';
import fc from 'fast-check';
import { implementation } from '../properties/adapters/registry.ts';
import { imageLayoutArbitrary } from '../properties/arbitraries/image-layout.ts';
import { commandSequenceArbitrary } from '../properties/arbitraries/command-sequence.ts';
import { supportedKinds } from '../properties/arbitraries/command-kinds.ts';
import { RunContext } from '../properties/runner/run-context.ts';
import {
  checkOracle,
  convertOracle,
  imageOracles,
  infoOracle,
  reopenOracle,
  snapshotOracle,
} from '../properties/oracles/image-oracles.ts';
import { bitmapOracle } from '../properties/oracles/bitmap-oracle.ts';
import { infoParityOracle } from '../properties/parity/engine-info-parity.ts';
import { mapParityOracle } from '../properties/parity/engine-map-parity.ts';
import { qemuImgInfoJson } from '../properties/qemu/qemu-img.ts';
import { toolTallies, toolTalliesSince } from '../properties/qemu/tool-runner.ts';
import { cpuSample, cpuSince } from '../properties/campaign/bench-cpu.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('--seconds', 20);
const SEED = arg('--seed', 1000);
/** `--runs N`: exactly N sequences (seeds S … S+N−1) instead of a time budget: comparable CPU figures. */
const RUNS = arg('--runs', 0);
/** `--together`: the image oracles side by side, as campaigns run them (imageOracles), not one by one. */
const TOGETHER = process.argv.includes('--together');

const phases = new Map<string, { ms: number; cpuMs: number; toolsCpuMs: number; n: number }>();
async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const c0 = cpuSample();
  try {
    return await f();
  } finally {
    const c = cpuSince(c0);
    const p = phases.get(name) ?? { ms: 0, cpuMs: 0, toolsCpuMs: 0, n: 0 };
    phases.set(name, p);
    p.ms += performance.now() - t0;
    p.cpuMs += c.selfMs;
    p.toolsCpuMs += c.toolsMs;
    p.n++;
  }
}

const im = implementation('engine');
const caps = await im.capabilities();
const arb = fc.tuple(
  imageLayoutArbitrary(caps),
  commandSequenceArbitrary(supportedKinds(caps), { maxCommands: 50 }),
);
const before = toolTallies();
const loadBefore = os.loadavg()[0].toFixed(2);
const deadline = Date.now() + SECONDS * 1000;
let sequences = 0;
let failures = 0;
const t0 = performance.now();
const c0 = process.cpuUsage();
for (let s = SEED; RUNS > 0 ? s < SEED + RUNS : Date.now() < deadline; s++) {
  const [[layout, commands]] = await timed('generate', async () => fc.sample(arb, { seed: s, numRuns: 1 }));
  const ctx = await timed('start (create, backing, bitmaps)', () => RunContext.start(im, layout));
  ctx.pipeline = true;
  try {
    await timed('op loop (mid-sequence tools included)', async () => {
      await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
      await ctx.settle();
    });
    await timed('close', () => ctx.handle.close());
    if (TOGETHER) await timed('image oracles, side by side', () => imageOracles(ctx, 'end'));
    else {
      // (check parity runs inside the check oracle, on its qemu-img check answer)
      await timed('oracle check', () => checkOracle(ctx, 'end'));
      // one qemu-img info for the info, bitmap and info-parity oracles, as imageOracles shares it
      const info = qemuImgInfoJson(ctx.imagePath, ctx.layout);
      info.catch(() => {});
      await timed('oracle info', () => infoOracle(ctx, 'end', info));
      await timed('oracle convert', () => convertOracle(ctx, 'end'));
      await timed('oracle snapshots', () => snapshotOracle(ctx, 'end'));
      await timed('oracle bitmaps', () => bitmapOracle(ctx, 'end', info));
      await timed('oracle info parity', () => infoParityOracle(ctx, 'end', info));
    }
    // as finalOracles: the engine's map beside qemu-img map
    await timed('oracle map parity', () => mapParityOracle(ctx, 'end'));
    await timed('oracle reopen+read', () => reopenOracle(ctx, 'end'));
  } catch (e) {
    failures++;
    process.stderr.write(`(seed ${s} failed: ${String(e).slice(0, 160)})\n`);
  } finally {
    await timed('dispose', () => ctx.dispose());
  }
  sequences++;
}
const wall = performance.now() - t0;
const cpu = process.cpuUsage(c0);
const out: string[] = [
  `profile-sequences — ${sequences} sequences (${failures} failed) in ${(wall / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1000 / 1000).toFixed(1)} s CPU (this process); ${(sequences / (wall / 1000)).toFixed(2)} seq/s; nproc ${os.cpus().length}; load ${loadBefore} → ${os.loadavg()[0].toFixed(2)}`,
  '',
  '| phase | wall ms/seq | CPU ms/seq (harness) | CPU ms/seq (tools) | share of wall |',
  '|---|---|---|---|---|',
];
let allCpu = 0;
let allTools = 0;
for (const [name, p] of phases) {
  allCpu += p.cpuMs;
  allTools += p.toolsCpuMs;
  out.push(
    `| ${name} | ${(p.ms / sequences).toFixed(1)} | ${(p.cpuMs / sequences).toFixed(1)} | ${(p.toolsCpuMs / sequences).toFixed(1)} | ${((100 * p.ms) / wall).toFixed(1)}% |`,
  );
}
out.push(
  `| (all phases; harness + tools ${((allCpu + allTools) / sequences).toFixed(1)} CPU ms/seq) | | ${(allCpu / sequences).toFixed(1)} | ${(allTools / sequences).toFixed(1)} | |`,
);
out.push('', '| tool run | runs/seq | wall ms/run |', '|---|---|---|');
const tallies = [...toolTalliesSince(before)].sort((a, b) => b[1].ms - a[1].ms);
let runs = 0;
for (const [k, v] of tallies) {
  runs += v.runs;
  out.push(`| ${k} | ${(v.runs / sequences).toFixed(2)} | ${(v.ms / v.runs).toFixed(1)} |`);
}
out.push(`| (all) | ${(runs / sequences).toFixed(2)} | |`);
process.stdout.write(out.join('\n') + '\n');
await im.shutdown?.();
