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
