/**
 * A fixed amount of engine op-loop work for profiling and before/after comparisons
 * (`node --cpu-prof --import tsx scripts/profile-oploop.ts [--seqs N] [--seed S]`): the same
 * data-path sequences `npm run bench:harness` measures (no oracles), seeds S..S+N-1, and the op
 * loop's operations, bytes and CPU time printed at the end.
 *
 * With `--profile`: self time per function; `--inclusive` time with callees; `--under NAME` only
 * below a function NAME; `--callers NAME` NAME's self time by its two callers; `--setup` set-up and
 * disposal instead of the op loop; `--each` one line per sequence.
 */
import * as inspector from 'node:inspector/promises';
import fc from 'fast-check';
import { implementation } from '../properties/adapters/registry.ts';
import { imageLayoutArbitrary } from '../properties/arbitraries/image-layout.ts';
import { commandSequenceArbitrary } from '../properties/arbitraries/command-sequence.ts';
import { DATA_PATH_KINDS, supportedKinds } from '../properties/arbitraries/command-kinds.ts';
import { RunContext } from '../properties/runner/run-context.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SEQS = arg('--seqs', 40);
const SEED = arg('--seed', 1);
/** `--seeds a,b,c`: these seeds instead of a range. */
const seedsArg = process.argv.indexOf('--seeds');
const SEEDS =
  seedsArg > 0
    ? process.argv[seedsArg + 1]!.split(',').map(Number)
    : Array.from({ length: SEQS }, (_, i) => SEED + i);
/** `--profile`: sample the op loops alone (set-up and disposal apart) and print self time per function. */
const PROFILE = process.argv.includes('--profile');
/** `--setup`: profile image creation and disposal instead of the op loop. */
const SETUP = process.argv.includes('--setup');
/** `--each`: one line per sequence (its layout's kind, operations, bytes, CPU time). */
const EACH = process.argv.includes('--each');

const im = implementation('engine');
const caps = await im.capabilities();
const kinds = supportedKinds(caps).filter((k) => DATA_PATH_KINDS.includes(k));
const arb = fc.tuple(imageLayoutArbitrary(caps), commandSequenceArbitrary(kinds, { maxCommands: 50 }));
let ops = 0;
let bytes = 0;
let loopCpu = 0;
let loopMs = 0;
let failures = 0;
let setupMs = 0;
let setupCpu = 0;
const cpuMs = (c: NodeJS.CpuUsage): number => (c.user + c.system) / 1000;
const session = new inspector.Session();
const selfUs = new Map<string, number>();
/** `--inclusive`: print time per function with its callees (each function once per sample). */
const INCLUSIVE = process.argv.includes('--inclusive');
const totalUs = new Map<string, number>();
/** `--under NAME`: with --inclusive, only the time spent below a function whose name is NAME. */
const underArg = process.argv.indexOf('--under');
const UNDER = underArg > 0 ? process.argv[underArg + 1] : undefined;
/** `--callers NAME`: self time of functions named NAME, by their callers' callers (two frames up). */
const callersArg = process.argv.indexOf('--callers');
const CALLERS = callersArg > 0 ? process.argv[callersArg + 1] : undefined;
const callersUs = new Map<string, number>();
if (PROFILE) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
}
for (const s of SEEDS) {
  const [[layout, commands]] = fc.sample(arb, { seed: s, numRuns: 1 });
  if (PROFILE && SETUP) await session.post('Profiler.start');
  const s0 = performance.now();
  const sc0 = process.cpuUsage();
  const ctx = await RunContext.start(im, layout);
  let seqSetupMs = performance.now() - s0;
  let seqSetupCpu = cpuMs(process.cpuUsage(sc0));
  if (PROFILE && SETUP) addProfile((await session.post('Profiler.stop')).profile);
  ctx.pipeline = true;
  if (PROFILE && !SETUP) await session.post('Profiler.start');
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  try {
    await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), commands);
    await ctx.settle();
  } catch (e) {
    failures++;
    process.stderr.write(`seed ${s} failed: ${String(e).slice(0, 200)}\n`);
  } finally {
    const c = process.cpuUsage(c0);
    loopMs += performance.now() - t0;
    loopCpu += (c.user + c.system) / 1000;
    if (PROFILE && !SETUP) addProfile((await session.post('Profiler.stop')).profile);
    ops += ctx.operations;
    bytes += ctx.bytes;
    if (PROFILE && SETUP) await session.post('Profiler.start');
    const d0 = performance.now();
    const dc0 = process.cpuUsage();
    await ctx.dispose();
    seqSetupMs += performance.now() - d0;
    seqSetupCpu += cpuMs(process.cpuUsage(dc0));
    setupMs += seqSetupMs;
    setupCpu += seqSetupCpu;
    if (PROFILE && SETUP) addProfile((await session.post('Profiler.stop')).profile);
    if (EACH)
      process.stdout.write(
        `seed ${s}: cluster ${2 ** layout.clusterBits}${layout.encrypt ? ` ${layout.encrypt}` : ''}${layout.extendedL2 ? ' extL2' : ''}${layout.backing ? ' backing' : ''}: ` +
          `${ctx.operations} ops, ${(ctx.bytes / 1024).toFixed(0)} KiB, ${((c.user + c.system) / 1000).toFixed(0)} CPU-ms; ` +
          `set-up and disposal ${seqSetupMs.toFixed(0)} ms wall, ${seqSetupCpu.toFixed(0)} CPU-ms\n`,
      );
  }
}
await im.shutdown?.();
if (PROFILE) {
  // percentages of the time the thread worked (idle time, waiting on I/O or for a CPU, apart)
  for (const k of [...selfUs.keys()]) if (/^(dispatch|\(idle\)|\(program\)) /.test(k)) selfUs.delete(k);
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  for (const [k, us] of [...(CALLERS ? callersUs : INCLUSIVE ? totalUs : selfUs)]
    .sort((a, b) => b[1] - a[1])
    .slice(0, INCLUSIVE ? 90 : 45))
    process.stdout.write(
      `${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}\n`,
    );
}
process.stdout.write(
  `${SEEDS.length} sequences${seedsArg > 0 ? '' : ` from seed ${SEED}`}: ${ops} ops, ${(bytes / Math.max(ops, 1) / 1024).toFixed(0)} KiB average; ` +
    `op loop ${loopMs.toFixed(0)} ms wall, ${loopCpu.toFixed(0)} ms CPU: ${((ops * 1000) / loopCpu).toFixed(0)} ops per CPU-s, ` +
    `${((ops * 1000) / loopMs).toFixed(0)} ops/s wall; set-up and disposal ${setupMs.toFixed(0)} ms wall, ${setupCpu.toFixed(0)} ms CPU (${((ops * 1000) / (loopMs + setupMs)).toFixed(0)} ops/s wall with set-up); ${failures} failed\n`,
);

function addProfile(p: inspector.Profiler.Profile): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (cf: inspector.Runtime.CallFrame): string =>
    `${cf.functionName || '(anon)'} ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const key = keyOf(byId.get(samples[i])!.callFrame);
    selfUs.set(key, (selfUs.get(key) ?? 0) + (deltas[i] ?? 0));
    if (CALLERS && byId.get(samples[i])!.callFrame.functionName === CALLERS) {
      const up1 = parent.get(samples[i]!);
      const up2 = up1 === undefined ? undefined : parent.get(up1);
      const k = [up1, up2].map((id) => (id === undefined ? '-' : keyOf(byId.get(id)!.callFrame))).join(' < ');
      callersUs.set(k, (callersUs.get(k) ?? 0) + (deltas[i] ?? 0));
    }
    if (!INCLUSIVE) continue;
    const seen = new Set<string>();
    const path: string[] = [];
    for (let id: number | undefined = samples[i]; id !== undefined; id = parent.get(id)) {
      const cf = byId.get(id)!.callFrame;
      if (UNDER && cf.functionName === UNDER) break;
      path.push(keyOf(cf));
      if (UNDER && id === p.nodes[0]!.id) path.length = 0;
    }
    for (const k of path) {
      if (seen.has(k)) continue;
      seen.add(k);
      totalUs.set(k, (totalUs.get(k) ?? 0) + (deltas[i] ?? 0));
    }
  }
}
