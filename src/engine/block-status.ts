/**
 * Block status (bdrv_block_status as `qemu-img map` reports it): for a guest range, the longest
 * run with one status — which layer of the backing chain holds it, whether it reads as zeros, is
 * stored data, compressed, and at which host offset.
 */
import type { BlockStatus } from '../api.ts';
import { CorruptionError } from '../errors.ts';
import * as C from '../format/constants.ts';
import { ClusterType, SubclusterType, subclusterType } from '../format/tables.ts';
import type { ImageState } from './state.ts';

export class BlockStatusQuery {
  constructor(private readonly s: ImageState) {}

  blockStatus(offset: number, length: number): BlockStatus {
    const cs = this.s.clusterSize;
    const first = this.statusOfCluster(Math.floor(offset / cs), offset, length);
    let len = Math.min(first.length, length);
    while (len < length) {
      const pos = offset + len;
      const next = this.statusOfCluster(Math.floor(pos / cs), pos, length - len);
      const contiguous =
        next.depth === first.depth &&
        next.present === first.present &&
        next.zero === first.zero &&
        next.data === first.data &&
        next.compressed === first.compressed &&
        next.filename === first.filename &&
        (first.hostOffset === undefined
          ? next.hostOffset === undefined
          : next.hostOffset === first.hostOffset + len);
      if (!contiguous) break;
      len = Math.min(len + next.length, length);
    }
    return { ...first, offset, length: len };
  }

  private statusOfCluster(guestCluster: number, pos: number, want: number): BlockStatus {
    const st = this.rawStatusOfCluster(guestCluster, pos, want);
    // Encrypted data has no meaningful host offset to report (QEMU sets no OFFSET_VALID).
    if (this.s.header.cryptMethod !== C.QCOW_CRYPT_NONE && st.depth === 0) delete st.hostOffset;
    return st;
  }

  /** The status at `pos` (in `guestCluster`), for up to `want` bytes when a run spans clusters. */
  private rawStatusOfCluster(guestCluster: number, pos: number, want: number): BlockStatus {
    const inCluster = pos - guestCluster * this.s.clusterSize;
    const base = {
      offset: pos,
      length: this.s.clusterSize - inCluster,
      depth: 0,
      filename: this.s.filename,
      compressed: false,
    };
    // Unallocated clusters with nothing recorded (no L2 table, or all-zero entries), as many as
    // the request covers, in one step.
    const run = this.s.map.unallocatedRun(guestCluster, Math.ceil((inCluster + want) / this.s.clusterSize));
    if (run > 0) return this.backingStatus({ ...base, length: run * this.s.clusterSize - inCluster }, pos);
    const e = this.s.map.lookup(guestCluster);
    if (this.s.extendedL2 && e.type !== ClusterType.Compressed) {
      const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
      const i = Math.floor(inCluster / sc);
      const sub = { ...base, length: (i + 1) * sc - inCluster };
      switch (subclusterType(e, i)) {
        case SubclusterType.Normal:
          return this.withFileExtent({
            ...sub,
            present: true,
            zero: false,
            data: true,
            hostOffset: e.hostOffset + inCluster,
            filename: this.s.data.name,
          });
        case SubclusterType.ZeroAlloc:
          return {
            ...sub,
            present: true,
            zero: true,
            data: false,
            hostOffset: e.hostOffset + inCluster,
            filename: this.s.data.name,
          };
        case SubclusterType.ZeroPlain:
          return { ...sub, present: true, zero: true, data: false };
        case SubclusterType.UnallocatedPlain:
          return this.backingStatus(sub, pos);
        case SubclusterType.UnallocatedAlloc: {
          // QEMU reports the host offset of an unallocated subcluster in an allocated cluster
          // (when nothing below provides the data: no backing file, or past its end, where
          // bdrv_co_block_status adds BDRV_BLOCK_ZERO to qcow2's OFFSET_VALID).
          const st = this.backingStatus(sub, pos);
          return st.depth === 0 && !st.present
            ? { ...st, hostOffset: e.hostOffset + inCluster, filename: this.s.data.name }
            : st;
        }
        default:
          throw new CorruptionError(
            'CORRUPT_SUBCLUSTER',
            `Invalid subcluster ${i} state in the L2 entry of guest cluster ${guestCluster}`,
            e.hostOffset,
            { guestCluster, subcluster: i },
          );
      }
    }
    switch (e.type) {
      case ClusterType.Normal: {
        return this.withFileExtent({
          ...base,
          present: true,
          zero: false,
          data: true,
          hostOffset: e.hostOffset + inCluster,
          filename: this.s.data.name,
        });
      }
      case ClusterType.ZeroAlloc:
        // qemu-img map reports the host offset of a preallocated zero cluster.
        return {
          ...base,
          present: true,
          zero: true,
          data: false,
          hostOffset: e.hostOffset + inCluster,
          filename: this.s.data.name,
        };
      case ClusterType.ZeroPlain:
        return { ...base, present: true, zero: true, data: false };
      case ClusterType.Compressed:
        return { ...base, present: true, zero: false, data: true, compressed: true };
      case ClusterType.Unallocated:
        return this.backingStatus(base, pos);
    }
  }

  /**
   * QEMU asks the file below too for data it maps (bdrv_co_block_status: DATA and OFFSET_VALID
   * without ZERO): the status stops where the host file's data or hole ends, and a hole of the
   * host file (preallocation=metadata, a cluster written only in part) reads as zeros and is
   * reported so ("zero": true, "data": true).
   */
  private withFileExtent(st: BlockStatus & { hostOffset: number }): BlockStatus {
    if (this.s.header.cryptMethod !== C.QCOW_CRYPT_NONE) return st;
    const ext = this.s.data.extent?.(st.hostOffset, st.length);
    return ext ? { ...st, zero: !ext.data, length: Math.min(st.length, ext.length) } : st;
  }

  private backingStatus(
    base: { offset: number; length: number; depth: number; filename: string; compressed: boolean },
    pos: number,
  ): BlockStatus {
    const b = this.s.backing;
    if (!b) return { ...base, present: false, zero: true, data: false };
    // Past the end of the backing file: reads as zeros, reported at this layer's depth (qemu-img map).
    if (pos >= b.size) return { ...base, present: false, zero: true, data: false };
    const s = b.blockStatus(pos, Math.min(base.length, b.size - pos));
    return { ...s, offset: pos, length: Math.min(base.length, s.length), depth: s.depth + 1 };
  }
}
