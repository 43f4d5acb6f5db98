import { describe, it } from 'vitest';
import { expectSliceToPass } from './campaign-slice.ts';

describe('engine against the model, with the qemu cross-checks', () => {
  it('fixed-seed slice (seed 3, 40 sequences of up to 300 steps)', async () => {
    await expectSliceToPass('engine', 3, 40, 300);
  }, 300_000);
});
