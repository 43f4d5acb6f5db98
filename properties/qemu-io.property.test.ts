import { describe, it } from 'vitest';
import { expectSliceToPass } from './campaign-slice.ts';

describe('qemu-io (one long-lived process per image) against the model', () => {
  it('fixed-seed slice (seed 2, 10 sequences of up to 100 steps)', async () => {
    await expectSliceToPass('qemu-io', 2, 10, 100);
  }, 300_000);
});
