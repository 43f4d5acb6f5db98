/**
 * Whether table entries are all zeros, by memcmp (Buffer.compare) rather than a byte loop: walks
 * over sparse L2 tables (block status, the checker) skip unallocated entries 64 at a time, so a
 * huge, mostly empty image costs native comparisons, not interpreted byte tests (issue 12).
 */

/** Entries one zero block covers. */
export const ZERO_BLOCK_ENTRIES = 64;

/** Zeros for the largest block: 64 extended L2 entries (16 bytes each). */
const ZEROS = Buffer.alloc(ZERO_BLOCK_ENTRIES * 16);

/** Entries [first, end) of `table` (entries of `entryBytes`) are all zeros; end - first ≤ 64. */
export function zeroEntries(table: Uint8Array, first: number, end: number, entryBytes: number): boolean {
  const a = first * entryBytes;
  const n = (end - first) * entryBytes;
  return Buffer.compare(Buffer.from(table.buffer, table.byteOffset + a, n), ZEROS.subarray(0, n)) === 0;
}

/**
 * The first entry in [first, end) of `table` that is not all zeros, or `end`: zero blocks (64
 * entries, aligned) are passed over by memcmp, and only a block holding a non-zero entry is looked
 * at entry by entry. A 2 TiB image's L1 table (4096 entries) is ~64 native comparisons.
 */
export function firstNonZeroEntry(table: Uint8Array, first: number, end: number, entryBytes: number): number {
  let i = first;
  while (i < end) {
    const blockEnd = Math.min(end, (Math.floor(i / ZERO_BLOCK_ENTRIES) + 1) * ZERO_BLOCK_ENTRIES);
    if (zeroEntries(table, i, blockEnd, entryBytes)) {
      i = blockEnd;
      continue;
    }
    for (; i < blockEnd; i++)
      for (let k = i * entryBytes; k < (i + 1) * entryBytes; k++) if (table[k] !== 0) return i;
  }
  return end;
}
