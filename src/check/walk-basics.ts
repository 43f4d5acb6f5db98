/**
 * What the check's walks share (walk.ts, l1-walk.ts, reftable-decode.ts, compare.ts, …): the fix
 * flags, the result counts (BdrvCheckResult), the abort and its errno texts, QEMU's number formats,
 * and which L2 entries point at a host cluster.
 */
import { ClusterType, compressedOffsetBits, type L2Entry } from '../format/tables.ts';

export const FIX_LEAKS = 1;
export const FIX_ERRORS = 2;

/** BdrvCheckResult + BlockFragInfo. */
export interface Res {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  totalClusters: number;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
}

export function newRes(): Res {
  return {
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
  };
}

/** A failure that ends the check (QEMU: a negative return from qcow2_check_refcounts). */
export class CheckAbort extends Error {
  constructor(readonly errnoText: string) {
    super(errnoText);
  }
}

export const EIO = 'Input/output error';
export const EFBIG = 'File too large';
export const EINVAL = 'Invalid argument';

/** %lx of a 64-bit value given as two halves. */
export function hex64(hi: number, lo: number): string {
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);
}
/** A compressed descriptor's host offset and byte count as BigInt (qcow2.txt "Compressed Clusters Descriptor"). */
export function compressedDescriptorExact(
  hi: number,
  lo: number,
  clusterBits: number,
): { offset: bigint; size: bigint } {
  const x = BigInt(compressedOffsetBits(clusterBits));
  const entry = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  const offset = entry & ((1n << x) - 1n);
  const sectors = ((entry & ((1n << 62n) - 1n)) >> x) + 1n;
  return { offset, size: sectors * 512n - (offset & 511n) };
}
export function hex(v: number): string {
  return v.toString(16);
}
/** printf's %#lx: "0x..." except for 0. */
export function altHex(v: number): string {
  return v === 0 ? '0' : '0x' + v.toString(16);
}

/** Most clusters a repair may grow the file to (the computed refcounts of 2^24 clusters: 64 MiB). */
export const GROWTH_LIMIT_CLUSTERS = 2 ** 24;

/**
 * Does a (non-compressed) L2 entry, as QEMU's check reads it, point at a host cluster? An offset,
 * or — with an external data file — offset 0 with COPIED and no zero flag.
 */
export function hostsData(e: L2Entry): boolean {
  if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) return false;
  return e.hostOffset !== 0 || e.type === ClusterType.Normal;
}
