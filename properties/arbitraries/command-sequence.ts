/** A sequence of commands of the enabled kinds, weighted, up to `maxCommands` long. */
import fc from 'fast-check';
import type { DiskModel } from '../model/disk-model.ts';
import type { RunContext } from '../runner/run-context.ts';
import { CATALOGUE, type CommandKind } from './command-kinds.ts';

export interface SequenceOptions {
  maxCommands: number;
  replayPath?: string;
  /** Weights that replace the catalogue's (a targeted search); a kind weighted 0 is left out. */
  weights?: Partial<Record<CommandKind, number>>;
}

export function commandSequenceArbitrary(
  kinds: readonly CommandKind[],
  opts: SequenceOptions,
): fc.Arbitrary<Iterable<fc.AsyncCommand<DiskModel, RunContext>>> {
  const weight = (k: CommandKind): number => opts.weights?.[k] ?? CATALOGUE[k].weight;
  const one = fc.oneof(
    ...kinds
      .filter((k) => weight(k) > 0)
      .map((k) => ({ weight: weight(k), arbitrary: CATALOGUE[k].arbitrary() })),
  );
  return fc.commands([one], { maxCommands: opts.maxCommands, size: 'max', replayPath: opts.replayPath });
}
