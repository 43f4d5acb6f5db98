/**
 * Swarm testing: each run leaves out a random subset of the command kinds, so that rare
 * interactions (many discards and no writes, snapshots without reads…) get whole sequences. Writes
 * and reads are kept in more than half of the runs, and with them the kinds over a backing file's
 * data and end (`backing-partial`, `backing-eof`): those apply only to the layouts that have a
 * backing file (two in five), where leaving them out as well would leave the backing file's end —
 * partial clusters, copy-on-write and reads across it — to chance.
 */
import fc from 'fast-check';
import type { CommandKind } from './command-kinds.ts';

const CORE: readonly CommandKind[] = ['write', 'read', 'backing-partial', 'backing-eof'];

export function swarmArbitrary(kinds: readonly CommandKind[]): fc.Arbitrary<CommandKind[]> {
  return fc.tuple(fc.subarray([...kinds], { minLength: 1 }), fc.boolean()).map(([subset, keepCore]) => {
    if (!keepCore) return subset;
    const core: CommandKind[] = kinds.filter((k) => CORE.includes(k));
    return kinds.filter((k) => subset.includes(k) || core.includes(k));
  });
}
