/**
 * The checker's view of the refcount table (qcow2.txt "Refcount table entry"): each entry's masked
 * offset (bits 9-63), whether reserved bits (0-8) are set, whether the offset is not cluster
 * aligned, and the exact hexadecimal offset of an entry beyond 2^53 (where a double rounds).
 * Only the non-zero entries are decoded (found by memcmp): a zero entry is offset 0
 * with nothing reserved, which the arrays hold already. A 2 TiB image's one-cluster table has
 * 8192 entries and a handful in use.
 */
import { u32 } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { readRefTableEntry } from '../format/tables.ts';
import { firstNonZeroEntry } from '../format/zero-entries.ts';
import { hex64 } from './walk-basics.ts';

export interface DecodedReftable {
  offsets: number[];
  reserved: boolean[];
  unaligned: boolean[];
  exact: Map<number, string>;
}

/** The `n` entries of the raw table `rt`, for clusters of `cs` bytes. */
export function decodeReftable(rt: Uint8Array, n: number, cs: number): DecodedReftable {
  const offsets = new Array<number>(n).fill(0);
  const reserved = new Array<boolean>(n).fill(false);
  const unaligned = new Array<boolean>(n).fill(false);
  const exact = new Map<number, string>();
  for (let i = firstNonZeroEntry(rt, 0, n, 8); i < n; i = firstNonZeroEntry(rt, i + 1, n, 8)) {
    const e = readRefTableEntry(rt, i);
    offsets[i] = e.offset;
    reserved[i] = e.reserved;
    // REFT_OFFSET_MASK keeps bits 9..63; cluster alignment is a question for the low word only.
    unaligned[i] = (u32(rt, i * 8 + 4) & C.REFT_OFFSET_MASK_LO & (cs - 1)) !== 0;
    if (e.offset > Number.MAX_SAFE_INTEGER)
      exact.set(i, hex64(u32(rt, i * 8), (u32(rt, i * 8 + 4) & C.REFT_OFFSET_MASK_LO) >>> 0));
  }
  return { offsets, reserved, unaligned, exact };
}
