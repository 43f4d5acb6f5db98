/** The operations of a qemu turn: one to four writes, zero writes, discards and reads. */
import fc from 'fast-check';
import type { TurnOpKind, TurnOpSeed } from '../commands/qemu-turn-command.ts';
import { rangeSeedArbitrary } from './range-seed.ts';
import { patternArbitrary } from './pattern.ts';

export function turnOpsArbitrary(): fc.Arbitrary<TurnOpSeed[]> {
  return fc.array(
    fc.record({
      kind: fc.constantFrom<TurnOpKind>('write', 'write', 'write-zeroes', 'discard', 'read', 'read'),
      range: rangeSeedArbitrary(),
      pattern: patternArbitrary(),
    }),
    { minLength: 1, maxLength: 4 },
  );
}
