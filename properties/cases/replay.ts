/** Replay a case's steps against an implementation, with the model and the final oracles. */
import { implementation, type ImplementationName } from '../adapters/registry.ts';
import { ImplementationError } from '../adapters/adapter.ts';
import { parseStep } from '../steps.ts';
import { executeStep } from '../runner/execute-step.ts';
import { finalOracles } from '../oracles/image-oracles.ts';
import { Divergence } from '../runner/divergence.ts';
import { RunContext } from '../runner/run-context.ts';
import type { CaseFile } from './case-file.ts';
import { ReaderOracle } from '../readers/reader-oracle.ts';
import { isReaderName } from '../readers/registry.ts';

export interface ReplayOutcome {
  passed: boolean;
  divergence?: Divergence;
  steps: string[];
}

export async function replayCase(
  file: CaseFile,
  implName: ImplementationName = file.impl,
): Promise<ReplayOutcome> {
  const impl = implementation(implName);
  let ctx: RunContext;
  try {
    ctx = await RunContext.start(impl, file.image.layout);
  } catch (e) {
    if (!(e instanceof ImplementationError)) throw e;
    const divergence = new Divergence({
      kind: 'operation-failed',
      stepIndex: -1,
      step: 'create',
      expected: 'success',
      observed: e.message,
    });
    return { passed: false, divergence, steps: [] };
  }
  // A reader's case replays with that reader at the checkpoints (every failure of it counts).
  const readers =
    file.readerDefect && isReaderName(file.readerDefect)
      ? await ReaderOracle.create([file.readerDefect], 'replay')
      : undefined;
  ctx.readers = readers;
  try {
    for (const line of file.steps) await executeStep(ctx, parseStep(line));
    await finalOracles(ctx);
    await readers?.checkpoint(ctx, 'end of sequence');
    return { passed: true, steps: ctx.steps };
  } catch (e) {
    const divergence = asDivergence(e, ctx.steps);
    return { passed: false, divergence, steps: ctx.steps };
  } finally {
    await readers?.shutdown();
    await ctx.dispose();
    await impl.shutdown?.();
  }
}

/** Anything thrown by a run, as a Divergence (an unexpected implementation error outside a step too). */
export function asDivergence(e: unknown, steps: readonly string[]): Divergence {
  if (e instanceof Divergence) return e;
  const stepIndex = steps.length - 1;
  const step = steps[stepIndex] ?? 'setup';
  if (e instanceof ImplementationError)
    return new Divergence({
      kind: 'operation-failed',
      stepIndex,
      step,
      expected: 'success',
      observed: e.message,
    });
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new Divergence({ kind: 'harness', stepIndex, step, expected: 'no exception', observed: message });
}
