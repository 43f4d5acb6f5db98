/** compare's byte comparisons (memcmp and bisection) against a byte loop. */
import { describe, expect, it } from 'vitest';
import { firstDiff, firstNonZero } from '../../src/cli/first-difference.ts';

const naiveDiff = (a: Uint8Array, b: Uint8Array): number => a.findIndex((v, i) => v !== b[i]);

describe('first difference', () => {
  it('finds the first differing byte, or -1, at every kind of position', () => {
    const n = 200_000;
    for (const at of [-1, 0, 1, 63, 64, 65, 4095, 65536, 131071, n - 1]) {
      const a = new Uint8Array(n).fill(7);
      const b = new Uint8Array(n).fill(7);
      if (at >= 0) b[at] = 8;
      if (at >= 0 && at + 1000 < n) b[at + 1000] = 9; // a later difference must not win
      expect(firstDiff(a, b)).toBe(naiveDiff(a, b));
      // Views with offsets into larger buffers (reads return subarrays).
      const big = new Uint8Array(n + 3);
      big.set(a, 3);
      expect(firstDiff(big.subarray(3), b)).toBe(naiveDiff(a, b));
    }
    expect(firstDiff(new Uint8Array(0), new Uint8Array(0))).toBe(-1);
  });

  it('finds the first non-zero byte, or -1', () => {
    const a = new Uint8Array(150_000);
    expect(firstNonZero(a)).toBe(-1);
    a[140_001] = 1;
    expect(firstNonZero(a)).toBe(140_001);
    a[3] = 2;
    expect(firstNonZero(a)).toBe(3);
    expect(firstNonZero(a.subarray(4))).toBe(140_001 - 4);
  });
});
