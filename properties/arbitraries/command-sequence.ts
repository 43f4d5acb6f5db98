/** A sequence of commands of the enabled kinds, weighted, up to `maxCommands` long. */
import fc from 'fast-check';
import type { DiskModel } from '../model/disk-model.ts';
import type { RunContext } from '../runner/run-context.ts';
import { CATALOGUE, type CommandKind } from './command-kinds.ts';

export interface SequenceOptions {
  maxCommands: number;
  replayPath?: string;
}

export function commandSequenceArbitrary(
  kinds: readonly CommandKind[],
  opts: SequenceOptions,
): fc.Arbitrary<Iterable<fc.AsyncCommand<DiskModel, RunContext>>> {
  const one = fc.oneof(
    ...kinds.map((k) => ({ weight: CATALOGUE[k].weight, arbitrary: CATALOGUE[k].arbitrary() })),
  );
  return fc.commands([one], { maxCommands: opts.maxCommands, size: 'max', replayPath: opts.replayPath });
}
