/** The data of a write: one byte value, qemu-io's `-P` pattern (so a step string replays exactly). */
import fc from 'fast-check';

export function patternArbitrary(): fc.Arbitrary<number> {
  return fc.oneof(
    { weight: 15, arbitrary: fc.integer({ min: 1, max: 255 }) },
    { weight: 1, arbitrary: fc.constant(0) },
  );
}
