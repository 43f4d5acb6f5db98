/**
 * A fuzz campaign: fast-check generates (layout, swarm of command kinds, command sequence),
 * runs it against the implementation and the model, runs the final oracles, shrinks failures, and
 * turns each failure into a case file. Time-boxed campaigns run fast-check in chunks of runs, one
 * seed per chunk, so every failure still has its own `seed` + `path` (+ `replayPath`).
 */
import fc from 'fast-check';
import type { ImplementationUnderTest, Capabilities } from '../adapters/adapter.ts';
import { implementation, type ImplementationName } from '../adapters/registry.ts';
import { imageLayoutArbitrary } from '../arbitraries/image-layout.ts';
import { supportedKinds, type CommandKind } from '../arbitraries/command-kinds.ts';
import { swarmArbitrary } from '../arbitraries/swarm.ts';
import { commandSequenceArbitrary } from '../arbitraries/command-sequence.ts';
import type { ImageLayout } from '../layout.ts';
import { describeLayout } from '../layout.ts';
import { finalOracles } from '../oracles/image-oracles.ts';
import { RunContext } from './run-context.ts';
import { asDivergence } from '../cases/replay.ts';
import type { Divergence } from './divergence.ts';
import { buildCase, saveCase, type CaseFile } from '../cases/case-file.ts';
import { ImplementationError } from '../adapters/adapter.ts';
import { Watchdog } from './watchdog.ts';
import { matchKnownBug } from '../known-bugs/index.ts';

export interface CampaignOptions {
  impl: ImplementationName;
  seed: number;
  /** Stop after this many runs (sequences) … */
  runs?: number;
  /** … or after this many seconds (default 60 when neither is given). */
  seconds?: number;
  maxSteps: number;
  /** Directory for case files (none written when undefined). */
  outDir?: string;
  /** Time allowed for shrinking one failure (seconds). */
  shrinkSeconds?: number;
  /** Replay one fast-check run exactly (with `seed`). */
  path?: string;
  replayPath?: string;
  onProgress?: (p: Progress) => void;
  /** A step not returning for this long is a hang: case written, process killed (needs outDir). */
  hangSeconds?: number;
}

export interface Progress {
  runs: number;
  operations: number;
  elapsedMs: number;
  failures: number;
  shrinking: boolean;
  layout?: string;
}

export interface CampaignResult extends Progress {
  seed: number;
  capabilities: Capabilities;
  cases: { file: CaseFile; savedAt?: string }[];
  /** Operations performed outside oracles and shrinking, and the time they took. */
  exploreOperations: number;
  exploreMs: number;
}

interface Generated {
  layout: ImageLayout;
  kinds: CommandKind[];
  commands: Iterable<fc.AsyncCommand<import('../model/disk-model.ts').DiskModel, RunContext>>;
}

interface FailureRecord {
  layout: ImageLayout;
  kinds: CommandKind[];
  steps: string[];
  divergence: Divergence;
}

export async function runCampaign(opts: CampaignOptions): Promise<CampaignResult> {
  const impl: ImplementationUnderTest = implementation(opts.impl);
  const caps = await impl.capabilities();
  const kinds = supportedKinds(caps);
  const started = Date.now();
  const progress: Progress = { runs: 0, operations: 0, elapsedMs: 0, failures: 0, shrinking: false };
  const cases: CampaignResult['cases'] = [];
  let exploreOperations = 0;
  let exploreMs = 0;

  let lastFailure: FailureRecord | undefined;
  let failureSeenAt: number | undefined;
  const shrinkMs = (opts.shrinkSeconds ?? 120) * 1000;

  const watchdog = opts.outDir
    ? new Watchdog({ stallMs: (opts.hangSeconds ?? 60) * 1000, outDir: opts.outDir })
    : undefined;
  let currentSeed = opts.seed;

  const arbitrary = fc
    .tuple(imageLayoutArbitrary(caps), swarmArbitrary(kinds))
    .chain(([layout, enabled]) =>
      commandSequenceArbitrary(enabled, { maxCommands: opts.maxSteps, replayPath: opts.replayPath }).map(
        (commands): Generated => ({ layout, kinds: enabled, commands }),
      ),
    );

  const property = fc.asyncProperty(arbitrary, async (g: Generated) => {
    // Shrinking past its budget: let the remaining candidates pass so the best so far is kept.
    if (failureSeenAt !== undefined && Date.now() - failureSeenAt > shrinkMs) return;
    progress.layout = describeLayout(g.layout);
    const runStarted = Date.now();
    let ctx: RunContext;
    try {
      ctx = await RunContext.start(impl, g.layout, watchdog, currentSeed);
    } catch (e) {
      if (!(e instanceof ImplementationError)) throw e;
      const divergence = asDivergence(e, ['create']);
      lastFailure = { layout: g.layout, kinds: g.kinds, steps: [], divergence };
      failureSeenAt ??= Date.now();
      throw divergence;
    }
    progress.runs += 1;
    try {
      await fc.asyncModelRun(() => ({ model: ctx.model, real: ctx }), g.commands);
      if (failureSeenAt === undefined) {
        exploreOperations += ctx.operations;
        exploreMs += Date.now() - runStarted;
      }
      await finalOracles(ctx);
    } catch (e) {
      const divergence = asDivergence(e, ctx.steps);
      lastFailure = { layout: g.layout, kinds: g.kinds, steps: [...ctx.steps], divergence };
      if (failureSeenAt === undefined) {
        failureSeenAt = Date.now();
        progress.failures += 1;
        progress.shrinking = true;
      }
      throw divergence;
    } finally {
      progress.operations += ctx.operations;
      progress.elapsedMs = Date.now() - started;
      opts.onProgress?.({ ...progress });
      await ctx.dispose();
    }
  });

  const record = (seed: number, details: fc.RunDetails<[Generated]>): void => {
    if (!details.failed || !lastFailure) return;
    const counterexample = details.counterexample?.[0];
    const replayPath = counterexample
      ? (/replayPath="([^"]*)"/.exec(String(counterexample.commands))?.[1] ?? null)
      : null;
    const d = lastFailure.divergence.details;
    const file = buildCase({
      comment: `Found by \`qcow2 fuzz --impl ${opts.impl} --seed ${opts.seed}\` (chunk seed ${seed}) on ${new Date().toISOString()}; shrunk to ${lastFailure.steps.length} steps.`,
      impl: opts.impl,
      layout: lastFailure.layout,
      steps: lastFailure.steps,
      seed,
      path: details.counterexamplePath,
      replayPath,
      enabledKinds: lastFailure.kinds,
      failure: { ...d, message: lastFailure.divergence.message },
    });
    file.knownBug = matchKnownBug(d, lastFailure.steps, opts.impl)?.id;
    cases.push({ file, savedAt: opts.outDir ? saveCase(opts.outDir, file) : undefined });
  };

  const baseParams = { endOnFailure: false, verbose: 0 as const };
  if (opts.path !== undefined) {
    record(opts.seed, await fc.check(property, { ...baseParams, seed: opts.seed, path: opts.path }));
  } else if (opts.runs !== undefined) {
    record(opts.seed, await fc.check(property, { ...baseParams, seed: opts.seed, numRuns: opts.runs }));
  } else {
    const deadline = started + (opts.seconds ?? 60) * 1000;
    let chunk = 0;
    while (Date.now() < deadline && cases.length === 0) {
      const perRun = progress.runs > 0 ? (Date.now() - started) / progress.runs : 2000;
      const numRuns = Math.max(1, Math.min(25, Math.floor((deadline - Date.now()) / perRun)));
      const seed = (opts.seed + chunk) | 0;
      currentSeed = seed;
      chunk += 1;
      record(seed, await fc.check(property, { ...baseParams, seed, numRuns }));
    }
  }
  await impl.shutdown?.();
  await watchdog?.stop();
  progress.elapsedMs = Date.now() - started;
  progress.shrinking = false;
  return { ...progress, seed: opts.seed, capabilities: caps, cases, exploreOperations, exploreMs };
}
