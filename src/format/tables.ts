/**
 * L1, L2 and refcount-table entries (qcow2.txt "Cluster mapping", "Host cluster management").
 * Pure codecs over the bytes of a table. One classifier (`classifyL2`) decides what an L2 entry
 * means; the reader, the writer and the checker all use it.
 *
 * Standard L2 entry cases (v3; v2 has no zero flag):
 *
 *   compressed | offset | zero | meaning
 *   -----------+--------+------+------------------------------------------------------------
 *        1     |  desc  |  -   | COMPRESSED: bits 0..61 are a compressed cluster descriptor
 *        0     |   0    |  0   | UNALLOCATED: read from the backing file (or zeros)
 *        0     |   0    |  1   | ZERO_PLAIN: reads as zeros, nothing allocated
 *        0     |  != 0  |  1   | ZERO_ALLOC: reads as zeros, the host cluster stays allocated
 *        0     |  != 0  |  0   | NORMAL: data at the host offset
 */
import { join64, setU32, u32 } from './bytes.ts';
import * as C from './constants.ts';

export const enum ClusterType {
  Unallocated = 0,
  ZeroPlain = 1,
  ZeroAlloc = 2,
  Normal = 3,
  Compressed = 4,
}

/** Subcluster types of extended L2 entries (qcow2.txt "Extended L2 Entries"). */
export const enum SubclusterType {
  UnallocatedPlain = 0,
  UnallocatedAlloc = 1,
  ZeroPlain = 2,
  ZeroAlloc = 3,
  Normal = 4,
  Compressed = 5,
  Invalid = 6,
}

export interface L2Entry {
  type: ClusterType;
  /** Host offset of the data cluster (0 when none); for compressed entries, the byte offset. */
  hostOffset: number;
  /** COPIED flag (bit 63): refcount is exactly 1. */
  copied: boolean;
  /** Compressed entries: bytes readable starting at hostOffset. */
  compressedLength: number;
  /** Reserved bits set (a corruption QEMU reports). */
  reserved: boolean;
  /** Extended L2: allocation bitmap (bits 0..31) and zero bitmap (bits 32..63 of the 2nd word). */
  allocBitmap: number;
  zeroBitmap: number;
}

/** Bit position where the compressed sector count starts: 62 - (cluster_bits - 8). */
export function compressedOffsetBits(clusterBits: number): number {
  return 62 - (clusterBits - 8);
}

/**
 * Decode entry `index` of an L2 table. `dataFile`: the image has an external data file, where
 * host offset 0 is a valid cluster; there COPIED disambiguates (qcow2.txt: data file clusters
 * always have refcount 1, so an allocated one always carries COPIED).
 */
export function readL2(
  table: Uint8Array,
  index: number,
  clusterBits: number,
  extendedL2: boolean,
  dataFile = false,
): L2Entry {
  const o = index * (extendedL2 ? 16 : 8);
  const hi = u32(table, o);
  const lo = u32(table, o + 4);
  const allocBitmap = extendedL2 ? u32(table, o + 12) : 0;
  const zeroBitmap = extendedL2 ? u32(table, o + 8) : 0;
  return classifyL2(hi, lo, clusterBits, allocBitmap, zeroBitmap, extendedL2, dataFile);
}

export function classifyL2(
  hi: number,
  lo: number,
  clusterBits: number,
  allocBitmap = 0,
  zeroBitmap = 0,
  extendedL2 = false,
  dataFile = false,
): L2Entry {
  const copied = (hi & C.L2E_COPIED_HI) !== 0;
  if (hi & C.L2E_COMPRESSED_HI) {
    // Descriptor: bits 0..x-1 host offset, bits x..61 additional 512-byte sectors.
    // x is 49..61, so the split lies in the high word; the whole descriptor can exceed 2^53.
    const hiBits = compressedOffsetBits(clusterBits) - 32;
    const hostOffset = join64(hi & ((1 << hiBits) - 1), lo);
    const sectors = (hi & 0x3fffffff) >>> hiBits;
    const compressedLength = (sectors + 1) * C.SECTOR_SIZE - (hostOffset % C.SECTOR_SIZE);
    return {
      type: ClusterType.Compressed,
      hostOffset,
      copied,
      compressedLength,
      reserved: copied,
      allocBitmap,
      zeroBitmap,
    };
  }
  const hostOffset = join64(hi & C.L2E_OFFSET_MASK_HI, lo & C.L2E_OFFSET_MASK_LO);
  const zero = !extendedL2 && (lo & C.L2E_ZERO_LO) !== 0;
  // QEMU's L2E_STD_RESERVED_MASK, in both modes (with extended L2 entries the zero flag, bit 0,
  // is ignored rather than reported: qemu-img check 7.2).
  const reserved = (hi & C.L2E_STD_RESERVED_HI) !== 0 || (lo & C.L2E_STD_RESERVED_LO) !== 0;
  let type: ClusterType;
  if (hostOffset === 0 && !(dataFile && copied))
    type = zero ? ClusterType.ZeroPlain : ClusterType.Unallocated;
  else type = zero ? ClusterType.ZeroAlloc : ClusterType.Normal;
  return { type, hostOffset, copied, compressedLength: 0, reserved, allocBitmap, zeroBitmap };
}

/** Type of subcluster `sc` (0..31) of an extended L2 entry. */
export function subclusterType(e: L2Entry, sc: number): SubclusterType {
  if (e.type === ClusterType.Compressed) return SubclusterType.Compressed;
  const bit = 1 << sc;
  const alloc = (e.allocBitmap & bit) !== 0;
  const zero = (e.zeroBitmap & bit) !== 0;
  // QEMU's qcow2_get_subcluster_type: the whole entry is invalid when any subcluster has both
  // bits set, or (no host cluster) when any allocation bit is set.
  if ((e.allocBitmap & e.zeroBitmap) !== 0) return SubclusterType.Invalid;
  if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) {
    if (e.allocBitmap !== 0) return SubclusterType.Invalid; // allocated subcluster without a host cluster
    return zero ? SubclusterType.ZeroPlain : SubclusterType.UnallocatedPlain;
  }
  if (alloc) return SubclusterType.Normal;
  return zero ? SubclusterType.ZeroAlloc : SubclusterType.UnallocatedAlloc;
}

export interface L2Write {
  type: ClusterType;
  hostOffset: number;
  copied: boolean;
  /** Compressed: number of additional 512-byte sectors. */
  sectors?: number;
  allocBitmap?: number;
  zeroBitmap?: number;
}

/** Encode an entry into `table` at `index`. */
export function writeL2(
  table: Uint8Array,
  index: number,
  clusterBits: number,
  extendedL2: boolean,
  e: L2Write,
): void {
  const o = index * (extendedL2 ? 16 : 8);
  let hi = 0;
  let lo = 0;
  if (e.type === ClusterType.Compressed) {
    const hiBits = compressedOffsetBits(clusterBits) - 32;
    hi = (((e.sectors ?? 0) << hiBits) | Math.floor(e.hostOffset / 0x100000000) | C.L2E_COMPRESSED_HI) >>> 0;
    lo = e.hostOffset >>> 0;
  } else if (e.type !== ClusterType.Unallocated || e.hostOffset !== 0) {
    hi = Math.floor(e.hostOffset / 0x100000000) & C.L2E_OFFSET_MASK_HI;
    lo = (e.hostOffset >>> 0) & C.L2E_OFFSET_MASK_LO;
    if (!extendedL2 && (e.type === ClusterType.ZeroPlain || e.type === ClusterType.ZeroAlloc))
      lo |= C.L2E_ZERO_LO;
    if (e.copied) hi = (hi | C.L2E_COPIED_HI) >>> 0;
  }
  setU32(table, o, hi);
  setU32(table, o + 4, lo);
  if (extendedL2) {
    setU32(table, o + 8, e.zeroBitmap ?? 0);
    setU32(table, o + 12, e.allocBitmap ?? 0);
  }
}

// ---- L1 ----

export interface L1Entry {
  l2Offset: number;
  copied: boolean;
  reserved: boolean;
}

export function readL1(table: Uint8Array, index: number): L1Entry {
  const hi = u32(table, index * 8);
  const lo = u32(table, index * 8 + 4);
  return {
    l2Offset: join64(hi & C.L1E_OFFSET_MASK_HI, lo & C.L1E_OFFSET_MASK_LO),
    copied: (hi & C.L1E_COPIED_HI) !== 0,
    reserved: (hi & C.L1E_RESERVED_HI) !== 0 || (lo & C.L1E_RESERVED_LO) !== 0,
  };
}

export function writeL1(table: Uint8Array, index: number, l2Offset: number, copied: boolean): void {
  let hi = Math.floor(l2Offset / 0x100000000) & C.L1E_OFFSET_MASK_HI;
  if (copied && l2Offset !== 0) hi = (hi | C.L1E_COPIED_HI) >>> 0;
  setU32(table, index * 8, hi);
  setU32(table, index * 8 + 4, (l2Offset >>> 0) & C.L1E_OFFSET_MASK_LO);
}

// ---- refcount table ----

export function readRefTable(table: Uint8Array, index: number): number {
  const hi = u32(table, index * 8);
  const lo = u32(table, index * 8 + 4);
  return join64(hi, lo & C.REFT_OFFSET_MASK_LO);
}

/** A refcount table entry: the block offset (bits 9..63) and whether reserved bits 0..8 are set. */
export function readRefTableEntry(table: Uint8Array, index: number): { offset: number; reserved: boolean } {
  return {
    offset: readRefTable(table, index),
    reserved: (u32(table, index * 8 + 4) & C.REFT_RESERVED_LO) !== 0,
  };
}

export function writeRefTable(table: Uint8Array, index: number, offset: number): void {
  setU32(table, index * 8, Math.floor(offset / 0x100000000));
  setU32(table, index * 8 + 4, offset >>> 0);
}

// ---- refcount blocks: entries of 1 << refcountOrder bits, sub-byte widths packed LSB-first ----

export function getRefcount(block: Uint8Array, index: number, refcountOrder: number): number {
  switch (refcountOrder) {
    case 0:
      return (block[index >>> 3]! >>> (index & 7)) & 1;
    case 1:
      return (block[index >>> 2]! >>> ((index & 3) * 2)) & 3;
    case 2:
      return (block[index >>> 1]! >>> ((index & 1) * 4)) & 15;
    case 3:
      return block[index]!;
    case 4:
      return (block[index * 2]! << 8) | block[index * 2 + 1]!;
    case 5:
      return u32(block, index * 4);
    case 6: {
      const o = index * 8;
      return join64(u32(block, o), u32(block, o + 4));
    }
    default:
      throw new RangeError(`refcount_order ${refcountOrder}`);
  }
}

export function setRefcount(block: Uint8Array, index: number, refcountOrder: number, value: number): void {
  switch (refcountOrder) {
    case 0: {
      const i = index >>> 3;
      const s = index & 7;
      block[i] = (block[i]! & ~(1 << s)) | ((value & 1) << s);
      return;
    }
    case 1: {
      const i = index >>> 2;
      const s = (index & 3) * 2;
      block[i] = (block[i]! & ~(3 << s)) | ((value & 3) << s);
      return;
    }
    case 2: {
      const i = index >>> 1;
      const s = (index & 1) * 4;
      block[i] = (block[i]! & ~(15 << s)) | ((value & 15) << s);
      return;
    }
    case 3:
      block[index] = value;
      return;
    case 4:
      block[index * 2] = value >>> 8;
      block[index * 2 + 1] = value & 0xff;
      return;
    case 5:
      setU32(block, index * 4, value);
      return;
    case 6:
      setU32(block, index * 8, Math.floor(value / 0x100000000));
      setU32(block, index * 8 + 4, value >>> 0);
      return;
    default:
      throw new RangeError(`refcount_order ${refcountOrder}`);
  }
}

/** Largest refcount a width can hold (2^53-1 for 64-bit: JavaScript's exact integers). */
export function maxRefcount(refcountOrder: number): number {
  return refcountOrder >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << refcountOrder) - 1;
}

/** Refcount entries per refcount block. */
export function refblockEntries(clusterBits: number, refcountOrder: number): number {
  return 2 ** (clusterBits + 3 - refcountOrder);
}
