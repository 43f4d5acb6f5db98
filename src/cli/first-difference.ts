/**
 * Where two buffers first differ, and where one first holds a non-zero byte, by memcmp
 * (Buffer#compare on ranges in place) rather than a byte loop: `compare` of allocated data costs
 * native comparisons, not an interpreted loop over every byte (issue 12). Equal buffers take one
 * comparison; a difference is found by halving the range that holds it, then a short byte scan.
 */
import { firstNonZeroEntry } from '../format/zero-entries.ts';

/** Ranges shorter than this are scanned byte by byte. */
const SCAN = 64;

/** The first index where `a` and `b` (of one length) differ, or -1. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = a.length;
  const x = Buffer.from(a.buffer, a.byteOffset, n); // a view, no copy
  if (x.compare(b, 0, n, 0, n) === 0) return -1;
  // [0, lo) is equal; [lo, hi) holds a difference.
  let lo = 0;
  let hi = n;
  while (hi - lo > SCAN) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (x.compare(b, lo, mid, lo, mid) === 0) lo = mid;
    else hi = mid;
  }
  for (let i = lo; i < hi; i++) if (a[i] !== b[i]) return i;
  return hi; // not reached: [lo, hi) holds a difference
}

/** The first index of a non-zero byte of `a`, or -1. */
export function firstNonZero(a: Uint8Array): number {
  const i = firstNonZeroEntry(a, 0, a.length, 1);
  return i < a.length ? i : -1;
}
