import { describe, it } from 'vitest';
import { expectSliceToPass } from './campaign-slice.ts';

describe('engine against the model, with the qemu cross-checks', () => {
  it('fixed-seed slice (seed 3, 15 sequences of up to 150 steps)', async () => {
    await expectSliceToPass('engine', 3, 15, 150);
  }, 300_000);
});
