/** The memcmp scans over table entries that walks of sparse images use (issue 12). */
import { describe, expect, it } from 'vitest';
import { firstNonZeroEntry, zeroEntries } from '../../src/format/zero-entries.ts';

describe('zero entries', () => {
  it('finds the first non-zero entry across zero blocks, within [first, end)', () => {
    const t = new Uint8Array(300 * 8);
    expect(firstNonZeroEntry(t, 0, 300, 8)).toBe(300);
    t[130 * 8 + 7] = 1; // the last byte of entry 130
    t[299 * 8] = 0x80; // the first byte of entry 299
    expect(firstNonZeroEntry(t, 0, 300, 8)).toBe(130);
    expect(firstNonZeroEntry(t, 5, 300, 8)).toBe(130);
    expect(firstNonZeroEntry(t, 130, 300, 8)).toBe(130);
    expect(firstNonZeroEntry(t, 131, 300, 8)).toBe(299);
    expect(firstNonZeroEntry(t, 131, 299, 8)).toBe(299); // end, exclusive
    expect(firstNonZeroEntry(t, 0, 130, 8)).toBe(130);
    expect(firstNonZeroEntry(t, 200, 200, 8)).toBe(200);
  });

  it('works with extended (16-byte) entries, a bitmap word alone making an entry non-zero', () => {
    const t = new Uint8Array(128 * 16);
    t[70 * 16 + 12] = 4; // the allocation bitmap of entry 70
    expect(firstNonZeroEntry(t, 0, 128, 16)).toBe(70);
    expect(zeroEntries(t, 64, 70, 16)).toBe(true);
    expect(zeroEntries(t, 64, 71, 16)).toBe(false);
  });

  it('agrees with an entry-by-entry scan, over tables larger than one comparison (64 KiB)', () => {
    // 2 MiB clusters' L2 tables are 2 MiB: several comparisons per range. Fixed positions.
    const entries = 40000;
    const t = new Uint8Array(entries * 8);
    const naive = (first: number, end: number): number => {
      for (let i = first; i < end; i++) if (t.subarray(i * 8, i * 8 + 8).some((b) => b !== 0)) return i;
      return end;
    };
    for (const at of [39999, 8192, 8191, 17, 0]) {
      t[at * 8 + (at % 8)] = 0x40;
      for (const [first, end] of [
        [0, entries],
        [1, entries],
        [at, at + 1],
        [Math.max(0, at - 3), Math.min(entries, at + 100)],
        [at + 1, entries],
        [8000, 9000],
      ] as const)
        expect(firstNonZeroEntry(t, first, end, 8)).toBe(naive(first, end));
    }
  });
});
