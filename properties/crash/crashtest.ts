/**
 * A crash-consistency campaign: random sequences as `qcow2 fuzz` draws them (small disks, no
 * backing file or encryption, only commands whose writes reach the image through the recorded
 * device), each run with its writes recorded, then every crash state the generator makes from the
 * log judged by the crash-state oracle. A failing sequence is shrunk by fast-check (fewest
 * operations), then its smallest failing crash state is picked (fewest unflushed writes landed, no
 * tear, earliest crash) and saved as a case whose script rebuilds that state with base64, gunzip
 * and dd and shows `qemu-img check` / `qemu-io read -P` failing on it.
 */
import { quirksOf } from '../runner/run-context.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import type { Capabilities } from '../adapters/adapter.ts';
import { ImplementationError } from '../adapters/adapter.ts';
import { imageLayoutArbitrary } from '../arbitraries/image-layout.ts';
import { supportedKinds, type CommandKind } from '../arbitraries/command-kinds.ts';
import { swarmArbitrary } from '../arbitraries/swarm.ts';
import { commandSequenceArbitrary } from '../arbitraries/command-sequence.ts';
import type { DiskModel } from '../model/disk-model.ts';
import type { KnownQuirks } from '../model/disk-model.ts';
import { describeLayout, type ImageLayout } from '../layout.ts';
import { RunContext } from '../runner/run-context.ts';
import { Divergence, type DivergenceDetails } from '../runner/divergence.ts';
import { signatureKey, signatureOf } from '../runner/signature.ts';
import { asDivergence } from '../cases/replay.ts';
import { parseWriteLog, type WriteLog } from './log-format.ts';
import { Replayer, type CrashState } from './replay.ts';
import { crashStates } from './states.ts';
import { CrashJudge, GuestTimeline, type StateFailure } from './oracle.ts';
import { CheckServer } from './check-server.ts';
import {
  recordingImplementation,
  type CrashImplName,
  type Recording,
  type RecordingImplementation,
} from './record.ts';
import { buildCrashCase, saveCrashCase, type CrashCase } from './crash-case.ts';
import { executeStep } from '../runner/execute-step.ts';
import { knownFinding } from './known-findings.ts';
import { parseStep } from '../steps.ts';
import { overlapGroups } from '../model/aio-orders.ts';

export interface CrashtestOptions {
  impl: CrashImplName;
  seed: number;
  seconds?: number;
  runs?: number;
  maxSteps?: number;
  /** Crash states judged per sequence at most. */
  statesPerSequence?: number;
  /** Largest virtual disk (bytes). */
  maxDiskSize?: number;
  outDir?: string;
  /** Wall-time limit on shrinking one failure (default 30 s): an outer safety limit for campaigns. */
  shrinkSeconds?: number;
  /**
   * Shrink attempts after a failure is first seen (default: no limit but the time). Counted, so where
   * shrinking stops does not depend on the machine's load as the time limit does.
   */
  shrinkRuns?: number;
  /** Command kinds left out of the sequences (besides those never recorded). */
  excludeKinds?: readonly CommandKind[];
  /** qemu-img check workers running side by side (default 2). */
  checkWorkers?: number;
  /** Stop at the first failure (default: go on; later failures with a reported signature are only counted). */
  stopOnFailure?: boolean;
  onProgress?: (p: CrashProgress) => void;
  /**
   * When `seconds` counts from (epoch ms; the CLI passes its process's start, so that the command
   * as a whole takes `seconds`). Default: now.
   */
  startedAt?: number;
}

/**
 * What a `seconds` campaign does after its last sequence, reserved before the end (ms): stopping the
 * check servers and the implementation (~0.05–0.2 s here), and, when a failure was shrunk, re-recording
 * its sequence and judging up to 600 of its crash states for the case file (1–3 s here at load 10).
 */
export const CRASH_TAIL_MS = { close: 250, failure: 3000 } as const;

export interface CrashProgress {
  sequences: number;
  operations: number;
  states: number;
  qemuChecks: number;
  failures: number;
  elapsedMs: number;
  shrinking: boolean;
}

export interface CrashFailureReport {
  signature: string;
  /** Set when the signature is a known finding (properties/crash/known-findings.ts). */
  knownFinding?: string;
  category: string;
  message: string;
  steps: number;
  case?: string;
}

export interface CrashtestResult extends CrashProgress {
  impl: CrashImplName;
  seed: number;
  /** Time spent judging states (replay, reads, qemu-img check), for states per second. */
  judgeMs: number;
  checkCacheHits: number;
  qemuReads: number;
  cases: { file: CrashCase; savedAt?: string }[];
  failuresDetail: CrashFailureReport[];
  /** Sequences failing with an already reported signature or a known finding (not shrunk), by signature. */
  repeats: Record<string, number>;
  /** qemu-io sequences whose log does not replay to the image (UnreplayableRun): counted, not judged. */
  unreplayable: number;
  /** Steps run, by kind (steps.ts), in the sequences counted. */
  stepKinds: Record<string, number>;
}

/**
 * A qemu-io run whose write log does not replay to the image it left, after aio requests that
 * overlap were in flight together: blklogwrites gives each write its place in the log when it is
 * submitted, while the file takes overlapping writes in the order they complete, so the log may
 * order two writes to the same sectors differently from the file. Such a log has no faithful crash
 * states; the run is counted (`unreplayable`, in the summary) instead of judged. Any other log that
 * does not replay is a harness failure.
 */
export class UnreplayableRun extends Error {}

/** Whether a step of the sequence is an aio batch with requests that overlap. */
function overlappingAio(steps: readonly string[]): boolean {
  return steps.some((line) => {
    if (!line.startsWith('aio_write')) return false;
    const step = parseStep(line);
    return step.kind === 'aio-batch' && overlapGroups(step.writes).some((g) => g.members.length > 1);
  });
}

/** The crashtest layouts: the implementation's, without backing file or encryption, disks ≤ maxDiskSize. */
export function crashLayoutArbitrary(caps: Capabilities, maxDiskSize: number): fc.Arbitrary<ImageLayout> {
  const narrowed: Capabilities = { ...caps, backingFile: false, encryption: [] };
  return imageLayoutArbitrary(narrowed).map((l) => ({
    ...l,
    size:
      l.size <= maxDiskSize ? l.size : Math.max(512, (l.size % maxDiskSize) - ((l.size % maxDiskSize) % 512)),
  }));
}

/** Commands whose writes all reach the image through the recording (no qemu turns or qemu-img runs). */
export function crashKinds(caps: Capabilities): CommandKind[] {
  // Only what goes through the recorded device: qemu-img steps on the closed image (checks,
  // repairs, convert round trips, bitmap commands) write outside the log.
  return supportedKinds(caps).filter(
    (k) =>
      k !== 'qemu-turn' &&
      k !== 'check' &&
      k !== 'check-repair' &&
      k !== 'convert' &&
      k !== 'amend' && // qemu-img amend (or the engine's, on a reopened file) writes outside the log
      !k.startsWith('vmstate-') && // the crash oracle's model has no VM-state area yet
      // qemu-img rebase/commit (and the files made for a rebase) run on the closed image, outside the log
      k !== 'rebase' &&
      k !== 'commit' &&
      !k.startsWith('bitmap-'),
  );
}

/** The model's expectations for a run: as the fuzz runs (run-context.ts), QEMU's for QEMU. */
export function quirksFor(caps: Capabilities): KnownQuirks {
  return quirksOf(caps.involvesQemu ? 'qemu-io' : 'engine', caps);
}

export interface SequenceRun {
  layout: ImageLayout;
  steps: string[];
  recording: Recording;
  log: WriteLog;
  final: Uint8Array;
}

/** After the sequence: the recorded log replayed whole must give the image the run left. */
export function verifyRecording(rec: Recording, log: WriteLog, final: Uint8Array): string | undefined {
  const replayer = new Replayer(rec.start, log);
  const all = replayer.build({
    crashAt: log.entries.length,
    durableTo: log.entries.length,
    landed: [],
    how: 'all',
  });
  const n = Math.min(all.length, final.length);
  for (let i = 0; i < n; i++)
    if (all[i] !== final[i]) return `the replayed log differs from the image at byte ${i}`;
  for (let i = n; i < all.length; i++)
    if (all[i] !== 0) return `the replayed log is longer than the image at ${i}`;
  for (let i = n; i < final.length; i++)
    if (final[i] !== 0) return `the image has bytes past the replayed log's end at ${i}`;
  return undefined;
}

/** Judge the crash states of a recorded sequence; the first failure (or all, with `all`). */
export async function judgeSequence(
  run: SequenceRun,
  caps: Capabilities,
  servers: CheckServer | CheckServer[],
  opts: {
    budget: number;
    seed: number;
    all?: boolean;
    scratchDir: string;
    /** No state is started after this time (epoch ms): a campaign's deadline. The stats count what was judged. */
    until?: number;
  },
): Promise<{ judge: CrashJudge; failures: { state: CrashState; failure: StateFailure }[] }> {
  const pool = Array.isArray(servers) ? servers : [servers];
  const timeline = new GuestTimeline(run.layout, run.steps, quirksFor(caps));
  const judge = new CrashJudge({
    timeline,
    recording: run.recording,
    log: run.log,
    servers: pool,
    scratchDir: opts.scratchDir,
  });
  const replayer = new Replayer(run.recording.start, run.log);
  const random = mulberry32(opts.seed);
  const failures: { state: CrashState; failure: StateFailure }[] = [];
  // Up to two checks in flight per worker: the next states are rebuilt and read meanwhile.
  const inFlight: Promise<void>[] = [];
  const settle = async (): Promise<void> => {
    await inFlight.shift();
  };
  for (const state of crashStates(run.log, { budget: opts.budget, random })) {
    if (!opts.all && failures.length > 0) break;
    if (opts.until !== undefined && Date.now() > opts.until) break;
    const bytes = replayer.build(state);
    const verdict = await judge.judge(state, bytes);
    inFlight.push(
      verdict().then((failure) => {
        if (failure) failures.push({ state, failure });
      }),
    );
    if (inFlight.length >= 2 * pool.length) await settle();
  }
  while (inFlight.length > 0) await settle();
  if (!opts.all) failures.splice(1);
  return { judge, failures };
}

export function mulberry32(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A crash-state failure as the harness's divergence (its signature category is the crash category). */
export function crashDivergence(
  run: Pick<SequenceRun, 'steps'>,
  state: CrashState,
  f: StateFailure,
): Divergence {
  const stepIndex = Math.max(-1, f.stepIndex);
  const details: DivergenceDetails = {
    kind: 'crash-state',
    stepIndex,
    step: stepIndex >= 0 ? run.steps[stepIndex] : 'setup',
    expected: f.expected,
    observed: { state: describeState(state), seen: f.observed, check: f.check },
    category: f.category,
  };
  return new Divergence(details);
}

export function describeState(s: CrashState): string {
  const torn = s.torn ? `, entry ${s.torn.at} torn (sectors ${s.torn.sectors.join(',')})` : '';
  return `${s.how}: crash after log entry ${s.crashAt - 1}; durable to ${s.durableTo}; landed since the last flush: [${s.landed.join(',')}]${torn}`;
}

/** Run the steps of a sequence again, recorded (no fast-check): for the final case. */
export async function rerecord(
  impl: RecordingImplementation,
  layout: ImageLayout,
  steps: readonly string[],
): Promise<SequenceRun> {
  impl.stepIndex = () => -1;
  const ctx = await RunContext.start(impl, layout);
  impl.stepIndex = () => ctx.steps.length - 1;
  try {
    for (const line of steps) await executeStep(ctx, parseStep(line));
    return await finishRun(ctx, impl);
  } finally {
    impl.stepIndex = () => -1;
    await ctx.dispose();
  }
}

async function finishRun(ctx: RunContext, impl: RecordingImplementation): Promise<SequenceRun> {
  await ctx.handle.close();
  const recording = impl.recording();
  const log = parseWriteLog(recording.logBytes(), { scanPastCount: true });
  const final = new Uint8Array(fs.readFileSync(ctx.imagePath));
  const bad = verifyRecording(recording, log, final);
  if (bad && impl.implName === 'qemu-io' && overlappingAio(ctx.steps))
    throw new UnreplayableRun(`${bad} (overlapping aio requests in flight)`);
  if (bad)
    throw new Divergence({
      kind: 'harness',
      stepIndex: ctx.steps.length - 1,
      step: 'end',
      expected: 'the recorded log replays to the image',
      observed: bad,
    });
  return { layout: ctx.layout, steps: [...ctx.steps], recording, log, final };
}

interface Generated {
  layout: ImageLayout;
  kinds: CommandKind[];
  commands: Iterable<fc.AsyncCommand<DiskModel, RunContext>>;
}

export async function runCrashtest(opts: CrashtestOptions): Promise<CrashtestResult> {
  const impl = recordingImplementation(opts.impl);
  const caps = await impl.capabilities();
  const kinds = crashKinds(caps).filter((k) => !opts.excludeKinds?.includes(k));
  const started = Date.now();
  const budgetStart = opts.startedAt ?? started;
  // Sequences start only before `workEnd`; shrinking ends early enough for the case to be written.
  const end = opts.runs === undefined ? budgetStart + (opts.seconds ?? 60) * 1000 : Infinity;
  const workEnd = end - CRASH_TAIL_MS.close;
  const shrinkEnd = workEnd - CRASH_TAIL_MS.failure;
  const scratchDir = fs.mkdtempSync(
    path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'qcow2-crash-'),
  );
  const servers = Array.from({ length: opts.checkWorkers ?? 2 }, () => new CheckServer());
  const progress: CrashProgress = {
    sequences: 0,
    operations: 0,
    states: 0,
    qemuChecks: 0,
    failures: 0,
    elapsedMs: 0,
    shrinking: false,
  };
  let judgeMs = 0;
  let checkCacheHits = 0;
  let qemuReads = 0;
  let unreplayable = 0;
  const stepKinds = new Map<string, number>();
  const budget = opts.statesPerSequence ?? 300;
  const shrinkMs = (opts.shrinkSeconds ?? 30) * 1000;
  const cases: CrashtestResult['cases'] = [];
  const failuresDetail: CrashFailureReport[] = [];
  let last:
    { layout: ImageLayout; steps: string[]; divergence: Divergence; kinds: CommandKind[] } | undefined;
  let failureSeenAt: number | undefined;
  /** Shrink attempts run since the failure being shrunk was first seen. */
  let shrinkAttempts = 0;
  const shrinkRuns = opts.shrinkRuns ?? Infinity;
  /** Signatures already reported (dedup: later sequences failing only with these are not shrunk again). */
  const known = new Set<string>();
  const knownHits = new Map<string, number>();
  /** While shrinking: the signature being shrunk (a smaller sequence must fail the same way). */
  let target: string | undefined;
  const counts = (d: Divergence): boolean => {
    const sig = signatureOf(d, opts.impl);
    const key = signatureKey(sig);
    if (target !== undefined) return key === target;
    // A known finding (known-findings.ts) is counted, not shrunk again: its case is in the corpus.
    if (knownFinding(sig)) known.add(key);
    return !known.has(key);
  };
  const noteFailure = (d: Divergence): void => {
    if (failureSeenAt !== undefined) return;
    failureSeenAt = Date.now();
    shrinkAttempts = 0;
    target = signatureKey(signatureOf(d, opts.impl));
    progress.failures += 1;
    progress.shrinking = true;
  };
  let chunkSeed = opts.seed;

  const arbitrary = fc
    .tuple(crashLayoutArbitrary(caps, opts.maxDiskSize ?? 2 << 20), swarmArbitrary(kinds))
    .chain(([layout, enabled]) =>
      commandSequenceArbitrary(enabled, { maxCommands: opts.maxSteps ?? 25 }).map((commands): Generated => ({
        layout,
        kinds: enabled,
        commands,
      })),
    );

  const property = fc.asyncProperty(arbitrary, fc.nat(), async (g: Generated, stateSeed: number) => {
    if (failureSeenAt !== undefined) {
      // Either limit ends shrinking: the remaining candidates pass without running.
      if (shrinkAttempts >= shrinkRuns || Date.now() - failureSeenAt > shrinkMs || Date.now() > shrinkEnd)
        return;
      shrinkAttempts += 1;
    } else if (Date.now() > workEnd) return; // past the budget: the chunk's remaining runs pass unrun
    impl.stepIndex = () => -1;
    let ctx: RunContext;
    try {
      ctx = await RunContext.start(impl, g.layout, undefined, chunkSeed);
    } catch (e) {
      if (!(e instanceof ImplementationError)) throw e;
      const divergence = asDivergence(e, ['create']);
      if (!counts(divergence)) return;
      last = { layout: g.layout, steps: [], divergence, kinds: g.kinds };
      noteFailure(divergence);
      throw divergence;
    }
    impl.stepIndex = () => ctx.steps.length - 1;
    try {
      let run: SequenceRun;
      try {
        await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), g.commands);
        run = await finishRun(ctx, impl);
      } catch (e) {
        if (e instanceof UnreplayableRun) {
          if (failureSeenAt === undefined) unreplayable += 1;
          return;
        }
        const divergence = asDivergence(e, ctx.steps);
        if (!counts(divergence)) return;
        last = { layout: g.layout, steps: [...ctx.steps], divergence, kinds: g.kinds };
        noteFailure(divergence);
        throw divergence;
      } finally {
        if (failureSeenAt === undefined) {
          progress.sequences += 1;
          progress.operations += ctx.operations;
          for (const line of ctx.steps) {
            const kind = parseStep(line).kind;
            stepKinds.set(kind, (stepKinds.get(kind) ?? 0) + 1);
          }
        }
      }
      const t0 = Date.now();
      const { judge, failures } = await judgeSequence(run, caps, servers, {
        budget,
        seed: stateSeed,
        scratchDir,
        all: true,
        ...(Number.isFinite(end) ? { until: failureSeenAt === undefined ? workEnd : shrinkEnd } : {}),
      });
      if (failureSeenAt === undefined) {
        judgeMs += Date.now() - t0;
        progress.states += judge.stats.states;
        progress.qemuChecks += judge.stats.qemuChecks;
        checkCacheHits += judge.stats.checkCacheHits;
        qemuReads += judge.stats.qemuReads;
      }
      const divergences = failures.map((f) => crashDivergence(run, f.state, f.failure));
      const counted = divergences.filter(counts)[0];
      if (failureSeenAt === undefined)
        for (const key of new Set(divergences.map((d) => signatureKey(signatureOf(d, opts.impl)))))
          if (known.has(key)) knownHits.set(key, (knownHits.get(key) ?? 0) + 1);
      if (counted) {
        last = { layout: g.layout, steps: run.steps, divergence: counted, kinds: g.kinds };
        noteFailure(counted);
        throw counted;
      }
    } finally {
      impl.stepIndex = () => -1;
      progress.elapsedMs = Date.now() - started;
      opts.onProgress?.({ ...progress });
      await ctx.dispose();
    }
  });

  const record = async (seed: number, details: fc.RunDetails<[Generated, number]>): Promise<void> => {
    if (!details.failed || !last) return;
    const failed = last;
    last = undefined;
    failureSeenAt = undefined;
    if (target) known.add(target);
    target = undefined;
    progress.shrinking = false;
    const subject = opts.impl;
    let crash: { state: CrashState; failure: StateFailure; run: SequenceRun } | undefined;
    let divergence = failed.divergence;
    if (divergence.details.kind === 'crash-state') {
      // The smallest failing crash state of the shrunk sequence, with the same signature.
      const want = signatureKey(signatureOf(divergence, subject));
      const run = await rerecord(impl, failed.layout, failed.steps);
      const all = await judgeSequence(run, caps, servers, { budget: 600, seed: 1, all: true, scratchDir });
      const same = all.failures
        .filter((f) => signatureKey(signatureOf(crashDivergence(run, f.state, f.failure), subject)) === want)
        .sort((a, b) => stateSize(a.state) - stateSize(b.state));
      const pick = same[0] ?? all.failures[0];
      if (pick) {
        divergence = crashDivergence(run, pick.state, pick.failure);
        crash = { state: pick.state, failure: pick.failure, run };
      }
    }
    const sig = signatureOf(divergence, subject);
    const file = buildCrashCase({
      comment: `Found by \`qcow2 crashtest --impl ${opts.impl} --seed ${opts.seed}\` (chunk seed ${seed}) on ${new Date().toISOString()}; shrunk to ${failed.steps.length} steps.`,
      impl: opts.impl,
      layout: failed.layout,
      steps: failed.steps,
      seed,
      path: details.counterexamplePath,
      enabledKinds: failed.kinds,
      divergence,
      crash,
    });
    const savedAt = opts.outDir ? saveCrashCase(opts.outDir, file) : undefined;
    cases.push({ file, savedAt });
    failuresDetail.push({
      signature: signatureKey(sig),
      knownFinding: knownFinding(sig)?.label,
      category: sig.category,
      message: divergence.message,
      steps: failed.steps.length,
      case: savedAt,
    });
  };

  try {
    const base = { endOnFailure: false, verbose: 0 as const };
    if (opts.runs !== undefined) {
      await record(opts.seed, await fc.check(property, { ...base, seed: opts.seed, numRuns: opts.runs }));
    } else {
      const deadline = workEnd;
      let chunk = 0;
      while (Date.now() < deadline && (cases.length === 0 || opts.stopOnFailure !== true)) {
        const seed = (opts.seed + chunk) | 0;
        chunkSeed = seed;
        chunk += 1;
        const perRun = progress.sequences > 0 ? (Date.now() - started) / progress.sequences : 2000;
        const numRuns = Math.max(1, Math.min(10, Math.floor((deadline - Date.now()) / perRun)));
        await record(seed, await fc.check(property, { ...base, seed, numRuns }));
      }
    }
  } finally {
    for (const server of servers) await server.stop();
    await impl.shutdown?.();
    fs.rmSync(scratchDir, { recursive: true, force: true });
  }
  progress.elapsedMs = Date.now() - started;
  progress.shrinking = false;
  progress.qemuChecks += 0;
  return {
    ...progress,
    impl: opts.impl,
    seed: opts.seed,
    judgeMs,
    checkCacheHits,
    qemuReads,
    cases,
    failuresDetail,
    repeats: Object.fromEntries(knownHits),
    unreplayable,
    stepKinds: Object.fromEntries(stepKinds),
  };
}

/** Smaller is simpler: fewer unflushed writes landed, no tear, an earlier crash. */
export function stateSize(s: CrashState): number {
  return s.landed.length * 1e9 + (s.torn ? 1e8 : 0) + s.crashAt;
}

export { describeLayout };
