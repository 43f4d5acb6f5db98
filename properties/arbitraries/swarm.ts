/**
 * Swarm testing: each run leaves out a random subset of the command kinds, so that rare
 * interactions (many discards and no writes, snapshots without reads…) get whole sequences. Writes
 * and reads are kept in more than half of the runs.
 */
import fc from 'fast-check';
import type { CommandKind } from './command-kinds.ts';

export function swarmArbitrary(kinds: readonly CommandKind[]): fc.Arbitrary<CommandKind[]> {
  return fc.tuple(fc.subarray([...kinds], { minLength: 1 }), fc.boolean()).map(([subset, keepCore]) => {
    if (!keepCore) return subset;
    const core: CommandKind[] = kinds.filter((k) => k === 'write' || k === 'read');
    return kinds.filter((k) => subset.includes(k) || core.includes(k));
  });
}
