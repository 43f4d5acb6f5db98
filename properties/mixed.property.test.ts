import { describe, it } from 'vitest';
import { expectSliceToPass } from './campaign-slice.ts';

describe('engine and qemu-io taking turns on one image', () => {
  it('fixed-seed slice (seed 5, 20 sequences of up to 200 steps)', async () => {
    await expectSliceToPass('mixed', 5, 20, 200);
  }, 300_000);
});
