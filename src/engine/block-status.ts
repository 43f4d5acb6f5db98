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

const enum RunKind {
  None,
  Data,
  Zero,
}

export class BlockStatusQuery {
  /** qcow2_detect_metadata_preallocation's answer, taken once per open at the first query, as QEMU does. */
  private metadataPreallocation: boolean | undefined;

  constructor(private readonly s: ImageState) {}

  /**
   * QEMU asks the file below about a data cluster only when the image "looks metadata
   * preallocated" (qcow2_detect_metadata_preallocation, block/qcow2-refcount.c): the clusters
   * with a non-zero refcount among the image file's clusters reach max(real * 10 / 9, real + 2),
   * where real = the file's allocated bytes (st_blocks * 512) / cluster_size. Where the
   * allocated size cannot be known, QEMU's check fails and counts as "not preallocated".
   */
  private looksMetadataPreallocated(): boolean {
    if (this.metadataPreallocation !== undefined) return this.metadataPreallocation;
    const allocated = this.s.device.allocatedBytes?.();
    let answer = false;
    if (allocated !== undefined) {
      const cs = this.s.clusterSize;
      const real = Math.floor(allocated / cs);
      const threshold = Math.max(Math.floor((real * 10) / 9), real + 2);
      // bdrv_getlength: whole sectors; size_to_clusters rounds up
      const end = Math.ceil(this.s.device.size() / cs);
      let count = 0;
      for (let i = 0; i < end && count < threshold; i++) if (this.s.rc.get(i) !== 0) count++;
      answer = count >= threshold;
    }
    this.metadataPreallocation = answer;
    return answer;
  }

  blockStatus(offset: number, length: number): BlockStatus {
    const cs = this.s.clusterSize;
    const first = this.statusOfCluster(Math.floor(offset / cs), offset, length);
    let len = Math.min(first.length, length);
    const run = this.wholeClusterRun(first);
    while (len < length) {
      const pos = offset + len;
      // The common runs (data clusters one after another in the file, zero clusters or zero
      // subclusters) extend from the L2 entry alone; anything else takes the general path.
      if (run !== RunKind.None) {
        const more = this.runContinues(run, first, pos, len);
        if (more > 0) {
          len = Math.min(len + more, length);
          continue;
        }
      }
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

  /**
   * Whether the status `first` is one that the next L2 entries alone continue: a data cluster of
   * this layer (standard L2, not encrypted, the file below not asked: what rawStatusOfCluster
   * answers for a Normal entry, its host offset the next one's), or a zero cluster or subcluster
   * without host offset (ZeroPlain).
   */
  private wholeClusterRun(first: BlockStatus): RunKind {
    if (first.depth !== 0 || first.compressed || !first.present) return RunKind.None;
    if (
      !this.s.extendedL2 &&
      first.data &&
      !first.zero &&
      first.hostOffset !== undefined &&
      first.filename === this.s.data.name
    ) {
      const recurses = this.s.header.cryptMethod === C.QCOW_CRYPT_NONE && this.looksMetadataPreallocated();
      return recurses || this.s.header.cryptMethod !== C.QCOW_CRYPT_NONE ? RunKind.None : RunKind.Data;
    }
    if (!first.data && first.zero && first.hostOffset === undefined && first.filename === this.s.filename)
      return RunKind.Zero;
    return RunKind.None;
  }

  /**
   * How many bytes from `pos` (`len` bytes past the start of the run `first`) continue the run
   * `kind` (wholeClusterRun) with exactly the status rawStatusOfCluster would give them, read
   * from one L2 entry: 0 when it does not continue, or `pos` is not at a (sub)cluster boundary.
   */
  private runContinues(kind: RunKind, first: BlockStatus, pos: number, len: number): number {
    const cs = this.s.clusterSize;
    if (!this.s.extendedL2) {
      if (pos % cs !== 0) return 0;
      const e = this.s.map.lookup(pos / cs);
      const continues =
        kind === RunKind.Data
          ? e.type === ClusterType.Normal && e.hostOffset === first.hostOffset! + len
          : e.type === ClusterType.ZeroPlain;
      return continues ? cs : 0;
    }
    // extended L2 (only zero runs): the ZeroPlain subclusters from pos on in this cluster
    const sc = cs / C.SUBCLUSTERS_PER_CLUSTER;
    if (pos % sc !== 0) return 0;
    const guestCluster = Math.floor(pos / cs);
    const e = this.s.map.lookup(guestCluster);
    if (e.type === ClusterType.Compressed) return 0;
    let i = (pos - guestCluster * cs) / sc;
    let n = 0;
    while (i < C.SUBCLUSTERS_PER_CLUSTER && subclusterType(e, i) === SubclusterType.ZeroPlain) {
      i++;
      n++;
    }
    return n * sc;
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
   * A data cluster (OFFSET_VALID, DATA, not ZERO) is looked up in the file below only when qcow2
   * sets BDRV_BLOCK_RECURSE, i.e. when the image looks metadata preallocated
   * (qcow2_co_block_status; bdrv_co_block_status recurses only then). Then the status stops where
   * the host file's data or hole ends, a hole reads as zeros ("zero": true, "data": true), and
   * so does anything past the end of the file ("valid for the format driver to read beyond the
   * end of the underlying file": BDRV_BLOCK_EOF with no data adds BDRV_BLOCK_ZERO). Otherwise
   * the metadata alone answers, holes of the host file or not.
   */
  private withFileExtent(st: BlockStatus & { hostOffset: number }): BlockStatus {
    if (this.s.header.cryptMethod !== C.QCOW_CRYPT_NONE) return st;
    if (!this.looksMetadataPreallocated()) return st;
    if (st.hostOffset >= this.s.data.size()) return { ...st, zero: true };
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
