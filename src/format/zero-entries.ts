/**
 * Whether table entries are all zeros, by memcmp (Buffer#compare against a block of zeros) rather
 * than a byte loop: walks over sparse tables (block status, the checker) pass over unallocated
 * entries natively, so a huge, mostly empty image costs a few native comparisons, not interpreted
 * byte tests (issue 12). Comparisons take ranges of the table in place: nothing is allocated.
 */

/** Bytes one comparison covers at most: a whole L2 table of 64 KiB clusters. */
const ZERO_CHUNK = 64 * 1024;
const ZEROS = Buffer.alloc(ZERO_CHUNK);

/** Bytes [start, end) of `table` are all zeros. */
function zeroBytes(table: Uint8Array, start: number, end: number): boolean {
  for (let p = start; p < end; p += ZERO_CHUNK) {
    const n = Math.min(ZERO_CHUNK, end - p);
    if (ZEROS.compare(table, p, p + n, 0, n) !== 0) return false;
  }
  return true;
}

/** Entries [first, end) of `table` (entries of `entryBytes`) are all zeros. */
export function zeroEntries(table: Uint8Array, first: number, end: number, entryBytes: number): boolean {
  return zeroBytes(table, first * entryBytes, end * entryBytes);
}

/** Entries looked at one by one before the range is bisected (and below which it is scanned). */
const SCAN_ENTRIES = 16;

/** Entry `i` of `table` is not all zeros. */
function nonZero(table: Uint8Array, i: number, entryBytes: number): boolean {
  for (let k = i * entryBytes; k < (i + 1) * entryBytes; k++) if (table[k] !== 0) return true;
  return false;
}

/**
 * The first entry in [first, end) of `table` that is not all zeros, or `end`. The next few entries
 * are looked at one by one (in a dense table the next entry is in use: a walk over it stays at one
 * test per entry); past them, the range is halved while it holds a non-zero entry, keeping the
 * half where the first one is: about log2(n) comparisons, e.g. 10 for an L2 table of 8192 entries,
 * 1 when it is empty.
 */
export function firstNonZeroEntry(table: Uint8Array, first: number, end: number, entryBytes: number): number {
  const near = Math.min(end, first + SCAN_ENTRIES);
  for (let i = first; i < near; i++) if (nonZero(table, i, entryBytes)) return i;
  if (near >= end || zeroEntries(table, near, end, entryBytes)) return end;
  // [first, lo) is all zeros; [lo, hi) holds a non-zero entry.
  let lo = near;
  let hi = end;
  while (hi - lo > SCAN_ENTRIES) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (zeroEntries(table, lo, mid, entryBytes)) lo = mid;
    else hi = mid;
  }
  for (let i = lo; i < hi; i++) if (nonZero(table, i, entryBytes)) return i;
  return hi; // not reached: [lo, hi) holds a non-zero entry
}
