/**
 * `qcow2 fuzz` as a campaign task: sequence `i` of a campaign with base seed S is fast-check's run
 * `i` for seed S (`fc.check(…, { seed: S, path: String(i) })`: fast-check skips to run i by jumping
 * its generator, without generating the runs before it). So the sequence depends only on (S, i),
 * whatever the jobs or shards, and a case replays with `qcow2 fuzz --seed S --path P`.
 *
 * A run ends on the first failure without shrinking (`endOnFailure`); the campaign decides whether
 * the failure's signature is new and only then asks for `shrink`, which re-runs the same index
 * and lets fast-check shrink it until the deadline (candidates after it pass at once, so the best
 * so far is kept).
 */
import fc from 'fast-check';
import * as fs from 'node:fs';
import type { Capabilities, ImplementationUnderTest } from '../adapters/adapter.ts';
import { ImplementationError } from '../adapters/adapter.ts';
import { implementation, type ImplementationName } from '../adapters/registry.ts';
import { imageLayoutArbitrary } from '../arbitraries/image-layout.ts';
import { supportedKinds, type CommandKind } from '../arbitraries/command-kinds.ts';
import { swarmArbitrary } from '../arbitraries/swarm.ts';
import { commandSequenceArbitrary } from '../arbitraries/command-sequence.ts';
import { clusterSizeOf, type ImageLayout } from '../layout.ts';
import type { DiskModel } from '../model/disk-model.ts';
import { finalOracles } from '../oracles/image-oracles.ts';
import { RunContext } from '../runner/run-context.ts';
import { asDivergence } from '../cases/replay.ts';
import { Divergence, type DivergenceDetails } from '../runner/divergence.ts';
import { buildCase, saveCase } from '../cases/case-file.ts';
import { Watchdog } from '../runner/watchdog.ts';
import { commandKindOf, signatureKey, signatureOf } from '../runner/signature.ts';
import { QEMU_IO, runTool } from '../qemu/qemu-img.ts';
import { sequenceSeed } from './seed-space.ts';
import { labelledSignature, setKnownBugs, type KnownBugsSetting } from '../known-bugs/index.ts';
import type { FailureSignature } from '../runner/signature.ts';
import { ReaderOracle } from '../readers/reader-oracle.ts';
import { readerDelta } from '../readers/report.ts';
import type { ReaderName } from '../readers/registry.ts';
import { cpuSample, cpuSince } from './bench-cpu.ts';
import { toolTallies, toolTalliesSince } from '../qemu/tool-runner.ts';
import type { SequenceOutcome, SequenceTask, ShrinkOutcome, TaskIdentity } from './sequence-task.ts';

export interface FuzzTaskOptions {
  impl: ImplementationName;
  /** The campaign's base seed. */
  seed: number;
  maxSteps: number;
  /** fast-check's replayPath for `--path` replays. */
  replayPath?: string;
  /** Where the hang watchdog writes its case (no watchdog without it). */
  outDir?: string;
  hangSeconds?: number;
  /**
   * A targeted search (`repro IMAGE`): every sequence starts from this layout, with these command
   * weights and no swarm, and `judge` alone decides at the end whether the run failed (divergences
   * from the model on the way are not failures: the judge looks at the image they left).
   */
  /** `--known-bugs`: with 'none' the list (and its steering) is off, in this process and the workers. */
  knownBugs?: KnownBugsSetting;
  /** Extra readers (properties/readers/) that read the image at checkpoints; their failures are theirs. */
  readers?: readonly ReaderName[];
  search?: {
    name: string;
    layout: ImageLayout;
    weights: Partial<Record<CommandKind, number>>;
    judge: (ctx: RunContext) => Promise<void>;
  };
}

type Commands = Iterable<fc.AsyncCommand<DiskModel, RunContext>>;

interface Generated {
  layout: ImageLayout;
  kinds: CommandKind[];
  commands: Commands;
}

interface FailureRecord {
  layout: ImageLayout;
  kinds: CommandKind[];
  steps: string[];
  divergence: Divergence;
}

/** What one fc.check saw (fast-check runs the property once per candidate). */
interface CheckState {
  deadline: number;
  aborted: boolean;
  failure?: FailureRecord;
  operations: number;
  steps: string[];
  layout?: ImageLayout;
  /** Wall and CPU milliseconds in the operation loop. */
  loopMs: number;
  loopCpuMs: number;
  /** While shrinking: only failures with this signature key count (others pass). */
  target?: string;
}

function packageVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version?: string;
  };
  return pkg.version ?? 'unknown';
}

async function qemuIoVersion(): Promise<string> {
  const r = await runTool(QEMU_IO, ['--version']);
  return /version\s+(\S+)/.exec(r.stdout)?.[1] ?? 'unknown';
}

/** `v3 64K rc16 extl2 zstd lazy backing:qcow2 luks`: the layout without sizes and offsets. */
export function layoutClass(layout: ImageLayout): string {
  const size = clusterSizeOf(layout);
  const parts = [
    layout.compat === '0.10' ? 'v2' : 'v3',
    size >= 1 << 20 ? `${size >> 20}M` : `${size >> 10 || size}${size >= 1024 ? 'K' : 'B'}`,
    `rc${layout.refcountBits}`,
  ];
  if (layout.compat === '1.1') {
    if (layout.extendedL2) parts.push('extl2');
    if (layout.compressionType === 'zstd') parts.push('zstd');
    if (layout.lazyRefcounts) parts.push('lazy');
  }
  if (layout.backing) parts.push(`backing:${layout.backing.format}`);
  if (layout.encrypt) parts.push(layout.encrypt);
  return parts.join(' ');
}

/**
 * The longest a sequence may be: mostly short (most bugs need a handful of steps, and a short
 * sequence costs a fraction of a long one, so a budget sees many more layouts and starting
 * states), sometimes the full `maxSteps` (what needs many steps: a cache filling up, a refcount
 * block running over). Weights 4 : 3 : 2 : 1 for caps of 10, 40, 120 steps and maxSteps.
 */
function lengthCapArbitrary(maxSteps: number): fc.Arbitrary<number> {
  const caps = [10, 40, 120].filter((c) => c < maxSteps);
  return fc.oneof(...caps.map((c, i) => ({ weight: 4 - i, arbitrary: fc.constant(c) })), {
    weight: 1,
    arbitrary: fc.constant(maxSteps),
  });
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** Each command of the sequence, skipped (and the run marked aborted) once the deadline passes. */
function* untilDeadline(commands: Commands, st: CheckState): Commands {
  for (const c of commands) {
    yield {
      check: (m: Readonly<DiskModel>) => {
        if (st.aborted || Date.now() > st.deadline) {
          st.aborted = true;
          return false;
        }
        return c.check(m);
      },
      run: (m: DiskModel, r: RunContext) => c.run(m, r),
      toString: () => c.toString(),
    };
  }
}

export class FuzzTask implements SequenceTask {
  private readonly opts: FuzzTaskOptions;
  private readonly impl: ImplementationUnderTest;
  private ready: Promise<{ caps: Capabilities; arbitrary: fc.Arbitrary<Generated> }> | undefined;
  private readers: ReaderOracle | undefined;
  private readonly watchdog: Watchdog | undefined;
  private subject = '';
  /** The last failing run (what `shrink` falls back to when it cannot re-run it in time). */
  private last: { index: number; record: FailureRecord } | undefined;

  constructor(opts: FuzzTaskOptions) {
    this.opts = opts;
    if (opts.knownBugs) setKnownBugs(opts.knownBugs);
    this.impl = implementation(opts.impl);
    this.watchdog = opts.outDir
      ? new Watchdog({ stallMs: (opts.hangSeconds ?? 60) * 1000, outDir: opts.outDir })
      : undefined;
  }

  private prepare(): Promise<{ caps: Capabilities; arbitrary: fc.Arbitrary<Generated> }> {
    this.ready ??= (async () => {
      const caps = await this.impl.capabilities();
      const kinds = supportedKinds(caps);
      const search = this.opts.search;
      const arbitrary = fc
        .tuple(
          search ? fc.constant(search.layout) : imageLayoutArbitrary(caps),
          search ? fc.constant(kinds) : swarmArbitrary(kinds),
          search ? fc.constant(this.opts.maxSteps) : lengthCapArbitrary(this.opts.maxSteps),
        )
        .chain(([layout, enabled, cap]) =>
          commandSequenceArbitrary(enabled, {
            maxCommands: cap,
            replayPath: this.opts.replayPath,
            weights: search?.weights,
          }).map((commands): Generated => ({ layout, kinds: enabled, commands })),
        );
      const identity = await this.identity();
      this.subject = `${identity.impl}@${identity.implVersion}`;
      if (this.opts.readers?.length) {
        // A missing reader throws ReaderUnavailableError: asked for, it must be there.
        this.readers = await ReaderOracle.create(this.opts.readers);
        // Reader defects kept in corpus/ are known: counted, not shrunk again.
        this.readers.loadKnown(new URL('../../corpus/', import.meta.url).pathname);
      }
      return { caps, arbitrary };
    })();
    return this.ready;
  }

  async identity(): Promise<TaskIdentity> {
    const own = packageVersion();
    const implVersion =
      this.opts.impl === 'engine'
        ? own
        : this.opts.impl === 'qemu-io'
          ? await qemuIoVersion()
          : `${own}+qemu-io ${await qemuIoVersion()}`;
    const probeNotes = (this.impl as { probeNotes?: string[] }).probeNotes ?? [];
    return {
      task: this.opts.search?.name ?? 'fuzz',
      impl: this.opts.impl,
      implVersion,
      notes: [...probeNotes],
    };
  }

  private property(
    arbitrary: fc.Arbitrary<Generated>,
    st: CheckState,
  ): fc.IAsyncPropertyWithHooks<[Generated]> {
    return fc.asyncProperty(arbitrary, async (g: Generated) => {
      // Past the deadline: a sequence not started is not run (while shrinking, fast-check's
      // interrupt stops first; a candidate cut short by untilDeadline passes).
      if (st.aborted || Date.now() > st.deadline) {
        st.aborted = true;
        return;
      }
      st.layout = g.layout;
      let ctx: RunContext;
      try {
        ctx = await RunContext.start(this.impl, g.layout, this.watchdog, this.opts.seed);
        ctx.readers = this.readers;
        // (a search judges the image after the run: one step at a time there)
        ctx.pipeline = this.opts.search === undefined;
      } catch (e) {
        if (!(e instanceof ImplementationError)) throw e;
        const divergence = asDivergence(e, ['create']);
        if (!this.isTarget(st, divergence, [])) return;
        st.failure = { layout: g.layout, kinds: g.kinds, steps: [], divergence };
        throw divergence;
      }
      try {
        const search = this.opts.search;
        if (search) {
          // A search judges the image, whatever the model thought of the run on the way there.
          try {
            await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), untilDeadline(g.commands, st));
          } catch (e) {
            if (!(e instanceof Divergence)) throw e;
          }
          if (st.aborted) return;
          await search.judge(ctx);
          return;
        }
        const loopStarted = performance.now();
        const loopCpu = process.cpuUsage();
        try {
          await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), untilDeadline(g.commands, st));
          await ctx.settle();
        } finally {
          const cpu = process.cpuUsage(loopCpu);
          st.loopMs += performance.now() - loopStarted;
          st.loopCpuMs += (cpu.user + cpu.system) / 1000;
        }
        if (st.aborted) return;
        await finalOracles(ctx);
        await this.readers?.checkpoint(ctx, 'end of sequence');
      } catch (e) {
        const divergence = asDivergence(e, ctx.steps);
        // Shrinking keeps the signature and its known-bug label: a smaller sequence failing otherwise is another bug.
        if (!this.isTarget(st, divergence, ctx.steps)) return;
        st.failure = { layout: g.layout, kinds: g.kinds, steps: [...ctx.steps], divergence };
        throw divergence;
      } finally {
        st.operations = ctx.operations;
        st.steps = [...ctx.steps];
        await ctx.dispose();
      }
    });
  }

  /** The known bug (properties/known-bugs/) a failure with these steps matches; readers' failures are theirs. */
  private knownBugOf(
    d: DivergenceDetails,
    steps: readonly string[],
    layout: ImageLayout | undefined,
  ): string | undefined {
    return d.reader ? undefined : labelledSignature(d, steps, this.opts.impl, layout).knownBug;
  }

  private signatureOf(record: FailureRecord): FailureSignature {
    const d = record.divergence.details;
    const knownBug = this.knownBugOf(d, record.steps, record.layout);
    return { ...signatureOf(d, this.subject), ...(knownBug ? { knownBug } : {}) };
  }

  /**
   * What shrinking keeps: the signature key and the known-bug label. A new failure that shrinks
   * into a known bug's signature (or back) would be reported by the campaign as one thing while
   * `repro` of the saved case says the other.
   */
  private targetOf(d: DivergenceDetails, steps: readonly string[], layout: ImageLayout | undefined): string {
    return `${signatureKey(signatureOf(d, this.subject))} ${this.knownBugOf(d, steps, layout) ?? 'new'}`;
  }

  private isTarget(st: CheckState, divergence: Divergence, steps: readonly string[]): boolean {
    return st.target === undefined || this.targetOf(divergence.details, steps, st.layout) === st.target;
  }

  private async check(
    seed: number,
    path: string,
    deadline: number,
    shrink: boolean,
    target?: string,
  ): Promise<{ st: CheckState; details: fc.RunDetails<[Generated]> }> {
    const { arbitrary } = await this.prepare();
    const st: CheckState = {
      deadline,
      aborted: false,
      operations: 0,
      steps: [],
      target,
      loopMs: 0,
      loopCpuMs: 0,
    };
    const details = await fc.check(this.property(arbitrary, st), {
      seed,
      path,
      numRuns: 1,
      endOnFailure: !shrink,
      // Shrinking stops at the deadline with the best failure so far. fast-check's own interrupt
      // (rather than letting later candidates pass) keeps its path and replayPath replayable.
      ...(shrink ? { interruptAfterTimeLimit: Math.max(1, deadline - Date.now()) } : {}),
      verbose: 0,
    });
    return { st, details };
  }

  async run(index: number, deadline: number): Promise<SequenceOutcome> {
    const started = Date.now();
    const cpuStarted = process.cpuUsage();
    const toolsStarted = cpuSample();
    const runsStarted = toolTallies();
    await this.prepare();
    const readersBefore = this.readers ? structuredClone(this.readers.reports()) : undefined;
    const at = sequenceSeed(this.opts.seed, index);
    const { st, details } = await this.check(at.seed, at.path, deadline, false);
    if (details.failed && !st.failure) throw asError(details.errorInstance);
    const steps = st.failure?.steps ?? st.steps;
    const kinds: Record<string, number> = {};
    for (const s of steps) {
      const k = commandKindOf(s);
      kinds[k] = (kinds[k] ?? 0) + 1;
    }
    const outcome: SequenceOutcome = {
      index,
      completed: !st.aborted || details.failed,
      operations: st.operations,
      steps: steps.length,
      kinds,
      layoutClass: st.layout ? layoutClass(st.layout) : 'unknown',
      ms: Date.now() - started,
      loopMs: st.loopMs,
      loopCpuMs: st.loopCpuMs,
      cpuMs: ((c) => (c.user + c.system) / 1000)(process.cpuUsage(cpuStarted)),
      toolsCpuMs: cpuSince(toolsStarted).toolsMs,
      toolRuns: Object.fromEntries([...toolTalliesSince(runsStarted)].map(([k, t]) => [k, t.runs])),
      toolMs: Object.fromEntries([...toolTalliesSince(runsStarted)].map(([k, t]) => [k, Math.round(t.ms)])),
    };
    if (this.readers && readersBefore) outcome.readers = readerDelta(readersBefore, this.readers.reports());
    if (details.failed && st.failure) {
      this.last = { index, record: st.failure };
      outcome.failure = {
        // Labelled with the known bug it matches (properties/known-bugs/), never steered by it.
        signature: this.signatureOf(st.failure),
        message: st.failure.divergence.message,
        steps: st.failure.steps.length,
      };
    }
    return outcome;
  }

  async shrink(
    index: number,
    deadline: number,
    outDir: string | undefined,
    into?: string,
  ): Promise<ShrinkOutcome> {
    const at = sequenceSeed(this.opts.seed, index);
    return this.shrinkPath(at.seed, at.path, deadline, outDir, index, into);
  }

  /**
   * Re-run fast-check's `seed` + `path` (a sequence, or a recorded counterexample path) and shrink
   * until the deadline; the case is saved in `outDir`.
   */
  async shrinkPath(
    seed: number,
    path: string,
    deadline: number,
    outDir: string | undefined,
    index?: number,
    into?: string,
  ): Promise<ShrinkOutcome> {
    const started = Date.now();
    const fallback = index !== undefined && this.last?.index === index ? this.last.record : undefined;
    let record = fallback;
    let status: ShrinkOutcome['status'] = 'none';
    let counterexamplePath: string | null = null;
    let replayPath: string | null = null;
    if (Date.now() < deadline) {
      const target = fallback
        ? this.targetOf(fallback.divergence.details, fallback.steps, fallback.layout)
        : undefined;
      // While shrinking, readers fail only for the signature being shrunk and count nothing.
      if (fallback) this.readers?.noteFailure(fallback.divergence);
      const { st, details } = await this.check(seed, path, deadline, true, target).finally(() =>
        this.readers?.noteRecorded(fallback?.divergence.details),
      );
      if (details.failed && st.failure) {
        record = st.failure;
        status = st.aborted || details.interrupted ? 'partial' : 'full';
        counterexamplePath = details.counterexamplePath;
        const counterexample = details.counterexample?.[0];
        replayPath = counterexample
          ? (/replayPath="([^"]*)"/.exec(String(counterexample.commands))?.[1] ?? null)
          : null;
      } else if (details.failed && !(details.interrupted && details.numRuns === 0)) {
        throw asError(details.errorInstance);
      }
      // (interrupted before its first run ended: the budget ran out during the replay itself; fast-check
      // reports that as failed with no error, and the sequence's own failure stands, not shrunk)
    }
    if (!record) {
      return {
        index: index ?? -1,
        status: 'none',
        steps: [],
        message: 'no failure',
        ms: Date.now() - started,
      };
    }
    const d = record.divergence.details;
    const how =
      status === 'full'
        ? `shrunk to ${record.steps.length} steps`
        : status === 'partial'
          ? `shrinking stopped at the deadline at ${record.steps.length} steps (best so far)`
          : `not shrunk (no time left in the budget): ${record.steps.length} steps`;
    const file = buildCase({
      comment: `Found by \`qcow2 ${this.opts.search?.name ?? 'fuzz'} --impl ${this.opts.impl} --seed ${this.opts.seed}\`${index !== undefined ? ` (sequence ${index})` : ''} on ${new Date().toISOString()}; ${how}; replay: \`qcow2 fuzz --impl ${this.opts.impl} --seed ${seed} --path ${counterexamplePath ?? path}\`.`,
      impl: this.opts.impl,
      layout: record.layout,
      steps: record.steps,
      seed,
      path: counterexamplePath ?? path,
      replayPath,
      enabledKinds: record.kinds,
      failure: { ...d, message: record.divergence.message },
    });
    const knownBug = this.knownBugOf(d, record.steps, record.layout);
    let casePath: string | undefined;
    if (into) {
      fs.writeFileSync(into, `${JSON.stringify(file, null, 2)}\n`);
      fs.writeFileSync(into.replace(/\.json$/, '.sh'), file.script, { mode: 0o755 });
      casePath = into;
    } else if (outDir) casePath = saveCase(outDir, file);
    return {
      index: index ?? -1,
      status,
      steps: record.steps,
      message: record.divergence.message,
      ...(knownBug ? { knownBug } : {}),
      casePath,
      scriptPath: casePath?.replace(/\.json$/, '.sh'),
      ms: Date.now() - started,
    };
  }

  async close(): Promise<void> {
    await this.readers?.shutdown();
    await this.impl.shutdown?.();
    await this.watchdog?.stop();
  }
}
