import { describe, it } from 'vitest';
import { expectSliceToPass } from './campaign-slice.ts';

describe('qemu-io (one long-lived process per image) against the model', () => {
  it('fixed-seed slice (seed 2, 20 sequences of up to 200 steps)', async () => {
    await expectSliceToPass('qemu-io', 2, 20, 200);
  }, 300_000);
});
