/**
 * The test Stryker runs against every mutant (npm run mutation): a fixed-seed engine fuzz slice
 * with the qemu-img oracles. A mutant survives when this slice still passes.
 */
import { it } from 'vitest';
import { expectSliceToPass } from '../properties/campaign-slice.ts';

it('engine fixed-seed fuzz slice (seed 21, 12 sequences of up to 60 steps)', async () => {
  await expectSliceToPass('engine', 21, 12, 60, { firstFailureOnly: true });
}, 180_000);
