/**
 * Cluster operations: zeroing (zero clusters, zero subcluster bits, or written zeros where the
 * layout cannot say "zero"), discard (QEMU's discard_in_l2_slice), resize (freeing what a shrink
 * leaves behind, growing the L1 table), preallocation and making an image empty.
 */
import * as C from '../format/constants.ts';
import { l1EntriesFor } from '../format/header.ts';
import { ClusterType, type L2Entry, type L2Write } from '../format/tables.ts';
import { ALL_SUBCLUSTERS, hasHost, subclusterMask, type DataPath } from './data-path.ts';
import type { BlockDevice } from '../io/device.ts';
import type { ImageState } from './state.ts';
import type { DiscardType } from './refcounts.ts';

export class ClusterOps {
  constructor(
    private readonly s: ImageState,
    private readonly dp: DataPath,
  ) {}

  writeZeroes(offset: number, length: number, opts: { unmap?: boolean } = {}): void {
    if (this.s.extendedL2) {
      this.writeZeroesExtended(offset, length, opts.unmap ?? false);
      this.dp.invalidate();
      this.punchDataFile();
      return;
    }
    const cs = this.s.clusterSize;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const guestCluster = Math.floor(pos / cs);
      const inCluster = pos - guestCluster * cs;
      const clusterEnd = Math.min((guestCluster + 1) * cs, this.s.size);
      const n = Math.min(clusterEnd, end) - pos;
      const whole = inCluster === 0 && pos + n === clusterEnd;
      if (whole && this.zeroWholeCluster(guestCluster, opts.unmap ?? false)) {
        // done by metadata
      } else if (this.s.extendedL2) {
        this.zeroSubclusters(guestCluster, inCluster, n);
      } else if (
        !whole &&
        this.zeroPartialCluster(guestCluster, inCluster, n, clusterEnd, opts.unmap ?? false)
      ) {
        // the whole cluster became a zero cluster
      } else {
        const e = this.s.map.lookup(guestCluster);
        const already =
          e.type === ClusterType.ZeroPlain ||
          e.type === ClusterType.ZeroAlloc ||
          (e.type === ClusterType.Unallocated && !this.s.backing);
        if (!already) this.dp.writeCluster(guestCluster, inCluster, new Uint8Array(n));
      }
      pos += n;
    }
    this.dp.invalidate();
    this.punchDataFile();
  }

  /**
   * QEMU's rule for a zero write that covers part of a cluster (qcow2_co_pwrite_zeroes): when the
   * rest of the cluster already reads as zeros (through the backing chain) and this image holds no
   * data there (unallocated or a zero cluster), the whole cluster becomes a zero cluster (v3);
   * otherwise the zeros are written as data. False: not done here.
   */
  private zeroPartialCluster(
    guestCluster: number,
    inCluster: number,
    n: number,
    clusterEnd: number,
    unmap: boolean,
  ): boolean {
    if (this.s.header.version < 3) return false;
    const e = this.s.map.lookup(guestCluster);
    if (
      e.type !== ClusterType.Unallocated &&
      e.type !== ClusterType.ZeroPlain &&
      e.type !== ClusterType.ZeroAlloc
    )
      return false;
    const start = guestCluster * this.s.clusterSize;
    const head = new Uint8Array(inCluster);
    const tail = new Uint8Array(clusterEnd - (start + inCluster + n));
    if (head.length) this.dp.readRange(head, start);
    if (tail.length) this.dp.readRange(tail, start + inCluster + n);
    if (!isZero(head) || !isZero(tail)) return false;
    return this.zeroWholeCluster(guestCluster, unmap);
  }

  /**
   * Extended L2, split as QEMU's block layer splits a zero write (bdrv_co_do_pwrite_zeroes with
   * the subcluster as pwrite_zeroes_alignment): an unaligned head piece up to the next subcluster
   * boundary, the aligned bulk, an unaligned tail piece. A piece the driver refuses (ENOTSUP) is
   * written as zero data instead, in chunks of at most the 16 MiB bounce buffer.
   */
  private writeZeroesExtended(offset: number, length: number, unmap: boolean): void {
    const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    let pos = offset;
    let bytes = length;
    let head = pos % sc;
    const tail = (pos + bytes) % sc;
    while (bytes > 0) {
      let num = bytes;
      if (head) {
        num = Math.min(bytes, sc - head);
        head = (head + num) % sc;
      } else if (tail && num > sc) num -= tail;
      if (!this.pwriteZeroes(pos, num, unmap)) {
        num = Math.min(num, BOUNCE_BUFFER);
        this.dp.writeRange(pos, new Uint8Array(num));
      }
      pos += num;
      bytes -= num;
    }
  }

  /** QEMU's qcow2_co_pwrite_zeroes for extended L2; false is its ENOTSUP (the caller writes data). */
  private pwriteZeroes(offset: number, bytes: number, unmap: boolean): boolean {
    const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    const head = offset % sc;
    let tail = Math.ceil((offset + bytes) / sc) * sc - (offset + bytes);
    if (offset + bytes === this.s.size) tail = 0;
    if (head || tail) {
      // A piece inside one subcluster: the whole subcluster becomes zero only when it holds no
      // data here (unallocated or zero) and the rest of it reads as zeros.
      const start = offset - head;
      const guestCluster = Math.floor(start / this.s.clusterSize);
      const e = this.s.map.lookup(guestCluster);
      const bit = 1 << ((start % this.s.clusterSize) / sc);
      if (e.type === ClusterType.Compressed || (e.allocBitmap & bit) !== 0) return false;
      if ((e.zeroBitmap & bit) === 0) {
        const tailLen = Math.max(0, Math.min(tail, this.s.size - (offset + bytes)));
        const h = new Uint8Array(head);
        const t = new Uint8Array(tailLen);
        if (h.length) this.dp.readRange(h, start);
        if (t.length) this.dp.readRange(t, offset + bytes);
        if (!isZero(h) || !isZero(t)) return false;
      }
      return this.subclusterZeroize(start, sc, unmap);
    }
    return this.subclusterZeroize(offset, bytes, unmap);
  }

  /**
   * QEMU's qcow2_subcluster_zeroize (v3): partial clusters at either end get zero bits
   * (zero_l2_subclusters, which refuses compressed clusters), whole clusters become zero clusters
   * (zero_in_l2_slice). A refused tail leaves the head and the whole clusters already zeroed.
   */
  private subclusterZeroize(offset: number, bytes: number, unmap: boolean): boolean {
    const cs = this.s.clusterSize;
    let end = offset + bytes;
    const head = Math.min(end, Math.ceil(offset / cs) * cs) - offset;
    offset += head;
    const tail = end >= this.s.size ? 0 : end - Math.max(offset, Math.floor(end / cs) * cs);
    end -= tail;
    if (head && !this.zeroL2Subclusters(offset - head, head)) return false;
    const first = Math.floor(offset / cs);
    const count = Math.ceil((end - offset) / cs);
    for (let c = first; c < first + count; c++) this.zeroWholeCluster(c, unmap);
    if (tail && !this.zeroL2Subclusters(end, tail)) return false;
    return true;
  }

  /** QEMU's zero_l2_subclusters: set the zero bits and clear the allocation bits of a range. */
  private zeroL2Subclusters(offset: number, bytes: number): boolean {
    const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    const guestCluster = Math.floor(offset / this.s.clusterSize);
    const e = this.s.map.lookup(guestCluster);
    if (e.type === ClusterType.Compressed) return false; // cannot partially zero compressed data
    const first = (offset % this.s.clusterSize) / sc;
    const mask = subclusterMask(first, first + Math.ceil(bytes / sc) - 1);
    const allocBitmap = (e.allocBitmap & ~mask) >>> 0;
    const zeroBitmap = (e.zeroBitmap | mask) >>> 0;
    if (allocBitmap === e.allocBitmap && zeroBitmap === e.zeroBitmap) return true;
    this.dp.setEntry(guestCluster, {
      type: hasHost(e) ? ClusterType.Normal : ClusterType.ZeroPlain,
      hostOffset: e.hostOffset,
      copied: e.copied,
      allocBitmap,
      zeroBitmap,
    });
    return true;
  }

  /** Extended L2: whole subclusters get the zero bit; partly covered ones are written with zeros. */
  private zeroSubclusters(guestCluster: number, inCluster: number, n: number): void {
    const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    const e = this.s.map.lookup(guestCluster);
    const first = Math.ceil(inCluster / sc);
    const end = Math.floor((inCluster + n) / sc);
    const clusterEnd = Math.min(this.s.clusterSize, this.s.size - guestCluster * this.s.clusterSize);
    const lastEnd = inCluster + n === clusterEnd ? Math.ceil(clusterEnd / sc) : end; // a partial last subcluster at the disk end
    if (e.type === ClusterType.Compressed || lastEnd <= first) {
      this.dp.writeCluster(guestCluster, inCluster, new Uint8Array(n));
      return;
    }
    const mask = subclusterMask(first, lastEnd - 1);
    this.dp.setEntry(guestCluster, {
      type: hasHost(e) ? ClusterType.Normal : ClusterType.ZeroPlain,
      hostOffset: e.hostOffset,
      copied: hasHost(e) && this.dp.ownsExclusively(e),
      allocBitmap: (e.allocBitmap & ~mask) >>> 0,
      zeroBitmap: (e.zeroBitmap | mask) >>> 0,
    });
    if (inCluster < first * sc)
      this.dp.writeCluster(guestCluster, inCluster, new Uint8Array(first * sc - inCluster));
    const tail = Math.min(lastEnd * sc, clusterEnd);
    if (inCluster + n > tail) this.dp.writeCluster(guestCluster, tail, new Uint8Array(inCluster + n - tail));
  }

  /** The L2 entry of a cluster that reads as zeros and owns nothing. */
  private plainZeroEntry(): L2Write {
    return this.s.extendedL2
      ? {
          type: ClusterType.ZeroPlain,
          hostOffset: 0,
          copied: false,
          allocBitmap: 0,
          zeroBitmap: ALL_SUBCLUSTERS,
        }
      : { type: ClusterType.ZeroPlain, hostOffset: 0, copied: false };
  }

  /**
   * Turn a whole guest cluster into zeros through metadata; false when the layout cannot. What it
   * frees goes with QCOW2_DISCARD_REQUEST (zero_in_l2_slice; v2's discard fallback likewise).
   */
  private zeroWholeCluster(guestCluster: number, unmap: boolean): boolean {
    return this.s.rc.freeing('request', () => this.zeroWholeClusterNow(guestCluster, unmap));
  }

  private zeroWholeClusterNow(guestCluster: number, unmap: boolean): boolean {
    const e = this.s.map.lookup(guestCluster);
    if (this.s.header.version < 3) {
      // v2 has no zero flag: without a backing file an unallocated cluster reads as zeros.
      if (this.s.backing) return false;
      if (e.type === ClusterType.Unallocated) return true;
      this.release(e);
      this.dp.setEntry(guestCluster, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
      return true;
    }
    if (this.s.extendedL2) {
      // QEMU's zero_in_l2_slice: an all-ones zero bitmap; the entry (host cluster, COPIED flag)
      // stays unless it is compressed or unmapping frees an allocated cluster.
      if (e.type === ClusterType.Normal && !unmap) {
        if (e.allocBitmap === 0 && e.zeroBitmap === ALL_SUBCLUSTERS) return true;
        this.dp.setEntry(guestCluster, {
          type: ClusterType.Normal,
          hostOffset: e.hostOffset,
          copied: e.copied,
          allocBitmap: 0,
          zeroBitmap: ALL_SUBCLUSTERS,
        });
      } else {
        if (!hasHost(e) && e.type !== ClusterType.Compressed && e.zeroBitmap === ALL_SUBCLUSTERS) return true;
        this.release(e);
        this.dp.setEntry(guestCluster, this.plainZeroEntry());
      }
      return true;
    }
    if (e.type === ClusterType.ZeroPlain) return true;
    if (e.type === ClusterType.ZeroAlloc && !unmap) return true;
    // QEMU (zero_in_l2_slice): keep an exclusively owned host cluster as a preallocated zero
    // cluster unless unmapping is allowed; anything else becomes a plain zero cluster.
    if (
      (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) &&
      !unmap &&
      this.dp.ownsExclusively(e)
    ) {
      this.dp.setEntry(guestCluster, { type: ClusterType.ZeroAlloc, hostOffset: e.hostOffset, copied: true });
      return true;
    }
    this.release(e);
    this.dp.setEntry(guestCluster, this.plainZeroEntry());
    return true;
  }

  /**
   * A discard (qcow2_co_pdiscard → qcow2_cluster_discard): `type` is the discard type its frees
   * carry — a guest request by default; the VM-state drop after a snapshot passes 'never'.
   */
  discard(offset: number, length: number, type: DiscardType = 'request'): void {
    this.s.rc.freeing(type, () => this.discardRange(offset, length));
    this.punchDataFile();
  }

  private discardRange(offset: number, length: number): void {
    const cs = this.s.clusterSize;
    let first = Math.ceil(offset / cs);
    let end = Math.floor((offset + length) / cs);
    // The partial last cluster of a disk whose size is not cluster aligned counts as whole.
    if (offset + length === this.s.size && this.s.size % cs !== 0 && offset <= end * cs)
      end = Math.ceil(this.s.size / cs);
    if (offset % cs !== 0 && first > end) first = end;
    for (let c = first; c < end; c++) this.discardCluster(c);
    this.dp.invalidate();
  }

  /** QEMU's discard_in_l2_slice with full_discard=false. */
  private discardCluster(guestCluster: number): void {
    const e = this.s.map.lookup(guestCluster);
    const allocated =
      e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc || e.type === ClusterType.Compressed;
    if (!this.s.backing && !allocated) return;
    if (e.type === ClusterType.ZeroPlain) return;
    // v3 marks the cluster as zero; v2 can only unmap it (the backing file shows through).
    if (this.s.header.version < 3) {
      // v2 has no zero flag: unmapping would expose the backing file, so QEMU (7.2) leaves the
      // data in place when there is one (its discard returns ENOTSUP).
      if (e.type === ClusterType.Unallocated || this.s.backing) return;
      this.release(e);
      this.dp.setEntry(guestCluster, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
      return;
    }
    if (
      this.s.extendedL2 &&
      !hasHost(e) &&
      e.type !== ClusterType.Compressed &&
      e.zeroBitmap === ALL_SUBCLUSTERS
    )
      return;
    this.release(e);
    this.dp.setEntry(guestCluster, this.plainZeroEntry());
  }

  /**
   * Resize the guest disk (the facade checked the size and the shrink rule). `hideBacking`: a
   * grown area reads as zeros, not as the backing file (false at creation).
   */
  resizeTo(
    newSize: number,
    hideBacking: boolean,
    prealloc: 'off' | 'metadata' | 'falloc' | 'full' = 'off',
  ): void {
    const old = this.s.size;
    if (newSize === old) return;
    const needed = l1EntriesFor(newSize, this.s.clusterBits, this.s.extendedL2);
    const released: number[] = [];
    if (newSize < old) {
      const cs = this.s.clusterSize;
      // Free every cluster wholly beyond the new end, then zero the tail of the last cluster so
      // that growing again later reads zeros there.
      const end = Math.ceil(old / cs);
      for (let c = Math.ceil(newSize / cs); c < end; c++) {
        // Clusters no L2 entry records (no table, or all-zero entries) have nothing to free:
        // skipped a run at a time, so a shrink costs what is allocated, not the size removed.
        const skip = this.s.map.unallocatedRun(c, end - c);
        if (skip > 0) {
          c += skip - 1;
          continue;
        }
        const e = this.s.map.lookup(c);
        if (hasHost(e)) released.push(e.hostOffset / cs);
        // A full discard (QEMU's discard_in_l2_slice with full_discard): entry and bitmap cleared,
        // zero bits included.
        if (e.type !== ClusterType.Unallocated || e.zeroBitmap !== 0 || e.allocBitmap !== 0) {
          this.release(e, 'always');
          this.dp.setEntry(c, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
        }
      }
      if (newSize % cs !== 0) {
        const c = Math.floor(newSize / cs);
        const e = this.s.map.lookup(c);
        const tail = newSize % cs;
        if (
          e.type === ClusterType.Normal &&
          !this.s.extendedL2 &&
          !this.s.cipher &&
          e.hostOffset % cs === 0 &&
          this.dp.ownsExclusively(e)
        ) {
          // Plain data this image owns alone: zero the tail in place, as the whole-cluster rewrite
          // below would (same bytes on the host, same COPIED flag), without reading the cluster.
          this.dp.writeData(new Uint8Array(cs - tail), e.hostOffset + tail, c * cs + tail);
          if (!e.copied)
            this.dp.setEntry(c, { type: ClusterType.Normal, hostOffset: e.hostOffset, copied: true });
        } else if (e.type !== ClusterType.Unallocated && e.type !== ClusterType.ZeroPlain) {
          const keep = this.dp.readWholeCluster(c, e).subarray(0, tail);
          const full = new Uint8Array(cs);
          full.set(keep);
          this.dp.writeCluster(c, 0, full);
        }
      }
      this.s.map.shrinkL1(needed);
    } else if (needed > this.s.map.l1Size) {
      this.s.map.growL1(needed);
    }
    // Growing needs nothing else without a backing file: the tail of the old last cluster was
    // zeroed when the disk shrank (QEMU 7.2 leaves it: corpus/qemu-stale-tail-after-shrink-grow).
    this.s.header.size = newSize;
    this.s.meta.markHeaderDirty();
    if (hideBacking && newSize > old && this.s.backing && this.s.backing.size > old) {
      // The new area must read as zeros, not as the backing file's data behind it (QEMU's
      // bdrv_co_truncate zero-fills it in that case).
      this.writeZeroes(old, newSize - old);
    }
    if (newSize > old && (this.s.header.autoclearFeatures & C.AUTOCLEAR_DATA_FILE_RAW) !== 0n) {
      // A raw data file stays a plain image of the disk: grow it and map the new clusters.
      if (this.s.data.size() < newSize) this.s.data.truncate(newSize);
      this.preallocate('metadata');
    }
    // Growth with preallocation (qcow2_co_truncate): the new area's clusters are allocated, and
    // with falloc/full their space is reserved or written, so that writing there later does not
    // grow the file (iotests 125).
    if (newSize > old && prealloc !== 'off') this.preallocate(prealloc, old);
    this.s.meta.flush();
    if (newSize < old) {
      // qcow2_shrink_reftable: refcount blocks left counting nothing leave the table (a block
      // placed outside the range it covers would otherwise stay behind, all zeros: iotests 163);
      // those counted elsewhere are freed once the cleared table is on disk.
      const dropped = this.s.rc.dropUnusedBlocks();
      this.s.meta.flush();
      for (const c of dropped) this.s.rc.decrement(c, 1);
      if (dropped.length > 0) this.s.meta.flush();
      this.trimAfterShrink(released);
    }
  }

  /**
   * After a shrink is flushed (QEMU's qcow2_co_truncate): the data clusters it freed are
   * discarded in the file (QCOW2_DISCARD_ALWAYS: holes punched), and the file is cut after the
   * last cluster still in use. Both only touch clusters nothing on disk refers to any more.
   */
  private trimAfterShrink(released: number[]): void {
    const cs = this.s.clusterSize;
    this.punchDataFile(); // (an external data file's clusters: QCOW2_DISCARD_ALWAYS as well)
    if (this.s.data === this.s.device) {
      // adjacent clusters go down as one discard, as QEMU merges its discard regions
      const free = released.filter((c) => this.s.rc.get(c) === 0).sort((a, b) => a - b);
      for (let i = 0; i < free.length;) {
        let j = i + 1;
        while (j < free.length && free[j] === free[j - 1]! + 1) j++;
        this.s.device.discard?.(free[i]! * cs, (j - i) * cs);
        i = j;
      }
    }
    let last = this.s.alloc.endCluster() - 1;
    while (last >= 0 && this.s.rc.get(last) === 0) last--;
    if ((last + 1) * cs < this.s.device.size()) this.s.device.truncate((last + 1) * cs);
  }

  /** Allocate every unallocated cluster from guest offset `from` (0: all) to the disk's end. */
  preallocate(mode: 'metadata' | 'falloc' | 'full', from = 0): void {
    const cs = this.s.clusterSize;
    const clusters = Math.ceil(this.s.size / cs);
    /** The host clusters allocated here, as runs [start, end) in bytes. */
    const runs: Array<[number, number]> = [];
    const perTable = this.s.map.l2Entries;
    // A zero cluster without a host cluster (a grown area hiding the backing file) gets one and
    // stays zero: QEMU preallocates it, then its zero write keeps the allocation (ZeroAlloc).
    const wanted = (t: ClusterType): boolean =>
      t === ClusterType.Unallocated || (t === ClusterType.ZeroPlain && !this.s.extendedL2);
    for (let c = Math.floor(from / cs); c < clusters; c++) {
      const e = this.s.map.lookup(c);
      if (!wanted(e.type)) continue;
      const zero = e.type === ClusterType.ZeroPlain;
      if (!this.s.alloc.inRun()) {
        // QEMU's preallocate_co (handle_alloc): the L2 table first, then the table's clusters to
        // allocate in a row as one run.
        this.s.map.slotForWrite(c);
        let n = 1;
        const tableEnd = Math.min(clusters, (Math.floor(c / perTable) + 1) * perTable);
        while (c + n < tableEnd && wanted(this.s.map.lookup(c + n).type)) n++;
        this.s.alloc.planRun(n);
      }
      const host = this.dp.allocData(c);
      const r = runs[runs.length - 1];
      if (r && r[1] === host) r[1] = host + cs;
      else runs.push([host, host + cs]);
      this.dp.setEntry(
        c,
        // Extended L2: QEMU links preallocated clusters with m->prealloc set, which leaves the
        // bitmap as it was (no subcluster allocated: reads still go to the backing file).
        this.s.extendedL2
          ? {
              type: ClusterType.Normal,
              hostOffset: host,
              copied: true,
              allocBitmap: e.allocBitmap,
              zeroBitmap: e.zeroBitmap,
            }
          : // (full: the zeros are written below, and the cluster is plain data, as QEMU leaves it)
            zero && mode !== 'full'
            ? { type: ClusterType.ZeroAlloc, hostOffset: host, copied: true }
            : { type: ClusterType.Normal, hostOffset: host, copied: true, allocBitmap: ALL_SUBCLUSTERS },
      );
    }
    this.s.alloc.endRun();
    this.s.meta.flush();
    // The data clusters lie in the image file, or in the external data file, which QEMU then
    // grows to the disk's size (preallocate_co truncates it to the last cluster's end).
    const external = this.s.data !== this.s.device;
    const dev = external ? this.s.data : this.s.device;
    const end = external ? this.s.size : this.s.alloc.endCluster() * cs;
    if (external) {
      const start = dev.size();
      if (start >= end) return;
      if (mode === 'full') writeZeros(dev, start, end, cs);
      else if (mode === 'falloc' && dev.allocate) dev.allocate(start, end - start);
      else dev.truncate(end);
    } else {
      // The data clusters just allocated get their space (the metadata around them is written
      // by the flush above): zeros written (full) or blocks reserved (falloc); the file's length
      // covers the last cluster in every mode.
      // A growth from inside an allocated cluster (an old end not on a cluster boundary): the
      // grown part of that cluster gets its space too, as QEMU's falloc/full truncate gives it.
      const head = from % cs !== 0 ? this.s.map.lookup(Math.floor(from / cs)) : undefined;
      if (head && head.type === ClusterType.Normal && head.hostOffset !== 0) {
        const start = head.hostOffset + (from % cs);
        const stop = head.hostOffset + Math.min(cs, this.s.size - Math.floor(from / cs) * cs);
        runs.unshift([start, stop]);
      }
      for (const [a, b] of runs) {
        if (mode === 'full') writeZeros(dev, a, b, cs);
        else if (mode === 'falloc' && dev.allocate) dev.allocate(a, b - a);
      }
      if (dev.size() < end) dev.truncate(end);
    }
    // (a growth by truncate is deferred until the device's next flush)
    dev.flush();
  }

  /**
   * qcow2_free_any_cluster: the entry's reference goes (deferred, data-path.ts); with an external
   * data file there are no refcounts, and a normal or preallocated-zero cluster whose free `type`
   * (default: the operation's, refcounts.ts `freeing`) passes through is discarded in the data
   * file — queued until the operation's L2 tables are on disk (`punchDataFile`; QEMU issues it at
   * once, before: a crash between would leave an entry naming a hole).
   */
  private release(e: L2Entry, type?: DiscardType): void {
    if (this.s.map.dataFile && (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc))
      this.s.rc.queueDataFileDiscard(e.hostOffset, type);
    this.dp.releaseEntry(e);
  }

  /**
   * The data-file discards an operation queued: its tables written first (flush steps 1–4), then
   * the holes — before anything can write to those clusters again (a raw data file's host offset
   * is the guest offset).
   */
  private punchDataFile(): void {
    if (!this.s.map.dataFile) return;
    const ranges = this.s.rc.takeDataFileDiscards();
    if (ranges.length === 0) return;
    this.s.meta.flushTables();
    for (const [off, bytes] of ranges) this.s.data.discard?.(off, bytes);
  }

  /**
   * Unmap every cluster (qcow2_make_empty's full discard): the backing file shows through. QEMU
   * frees with QCOW2_DISCARD_SNAPSHOT here ("generally used after committing an external snapshot").
   */
  makeEmpty(): void {
    this.s.rc.freeing('snapshot', () => this.unmapAll());
    this.punchDataFile();
  }

  private unmapAll(): void {
    const cs = this.s.clusterSize;
    for (let c = 0; c < Math.ceil(this.s.size / cs); c++) {
      if (this.s.map.l2OffsetAt(this.s.map.split(c)[0]) === 0) {
        c = (this.s.map.split(c)[0] + 1) * this.s.map.l2Entries - 1;
        continue;
      }
      const e = this.s.map.lookup(c);
      // (extended L2: zeroed subclusters live in the bitmap of an otherwise unallocated entry)
      if (e.type === ClusterType.Unallocated && e.zeroBitmap === 0 && e.allocBitmap === 0) continue;
      this.release(e);
      this.dp.setEntry(c, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
    }
    this.s.meta.flush();
    this.dp.invalidate();
  }
}

/** Zeros over [from, to) of `dev`, a cluster at a time. */
/** QEMU's MAX_BOUNCE_BUFFER: the most a refused zero write falls back to writing at once. */
const BOUNCE_BUFFER = 32768 * 512;

function writeZeros(dev: BlockDevice, from: number, to: number, cs: number): void {
  const zeros = new Uint8Array(Math.max(cs, 1 << 20));
  for (let off = from; off < to; off += zeros.length)
    dev.write(zeros.subarray(0, Math.min(zeros.length, to - off)), off);
}

function isZero(b: Uint8Array): boolean {
  for (const v of b) if (v !== 0) return false;
  return true;
}
