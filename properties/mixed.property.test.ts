import { describe, it } from 'vitest';
import { expectSliceToPass } from './campaign-slice.ts';

describe('engine and qemu-io taking turns on one image', () => {
  it('fixed-seed slice (seed 5, 10 sequences of up to 100 steps)', async () => {
    await expectSliceToPass('mixed', 5, 10, 100);
  }, 300_000);
});
