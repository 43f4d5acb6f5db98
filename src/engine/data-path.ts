/**
 * The data path: guest reads and writes, cluster by cluster and (extended L2) subcluster by
 * subcluster — copy-on-write of shared and partly written clusters, reads through to the backing
 * disk, compressed clusters (inflate on read, deflate on write), and sector-level encryption of
 * guest data on its way to and from the host (qcow2.txt "crypt_method").
 */
import { CorruptionError, IoError, Qcow2Error } from '../errors.ts';
import * as C from '../format/constants.ts';
import { ClusterType, SubclusterType, subclusterType, type L2Entry, type L2Write } from '../format/tables.ts';
import type { DataCipher, ImageState } from './state.ts';
import { planAllocationRun } from './alloc-run.ts';

/** Extended L2 bitmaps: every subcluster. */
export const ALL_SUBCLUSTERS = 0xffffffff;

/** Bits first..last (inclusive) of a subcluster bitmap. */
export function subclusterMask(first: number, last: number): number {
  const width = last - first + 1;
  return width >= 32 ? ALL_SUBCLUSTERS : ((2 ** width - 1) * 2 ** first) >>> 0;
}

/** Does the entry own a host cluster (data or preallocated zeros)? */
export function hasHost(e: L2Entry): boolean {
  return e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc;
}

export class DataPath {
  /** Last decompressed cluster (host descriptor offset → bytes): sequential reads hit it. */
  private inflated: { offset: number; bytes: Uint8Array } | undefined;

  /**
   * Where the last data request of the current guest request ended on the host: QEMU raises one
   * `read_aio`/`write_aio` debug event per host-contiguous run of a request, not per cluster.
   */
  private runEnd = -1;

  /** The copy-on-write buffer (cowBuffer). */
  private cow = new Uint8Array(0);

  constructor(private readonly s: ImageState) {}

  /** The debug event of a data request at `host`, unless it continues the previous run. */
  private dataEvent(ev: 'read_aio' | 'write_aio', host: number, length: number): void {
    if (host !== this.runEnd) this.s.device.event?.(ev);
    this.runEnd = host + length;
  }

  /** Guest data changed: the decompressed-cluster cache may be stale. */
  invalidate(): void {
    this.inflated = undefined;
  }

  /** Write guest data over whole and partial clusters. */
  writeRange(offset: number, data: Uint8Array): void {
    const cs = this.s.clusterSize;
    this.runEnd = -1;
    let done = 0;
    const end = Math.ceil((offset + data.length) / cs);
    this.s.alloc.endRun(); // a new request: no host run to go on from (even after a failed one)
    if (this.s.extendedL2) this.refuseInvalidEntries(Math.floor(offset / cs), end);
    while (done < data.length) {
      const pos = offset + done;
      const guestCluster = Math.floor(pos / cs);
      const inCluster = pos - guestCluster * cs;
      const n = Math.min(cs - inCluster, data.length - done);
      planAllocationRun(this.s, (e) => this.ownsExclusively(e), guestCluster, end); // alloc-run.ts
      this.writeCluster(guestCluster, inCluster, data.subarray(done, done + n));
      done += n;
    }
    this.s.alloc.endRun(); // (after a failed write: the next request's plan or the flush does it)
    this.inflated = undefined;
  }

  /** Compressed writes of whole clusters (the facade checked alignment and the layout). */
  writeCompressedRange(offset: number, data: Uint8Array): void {
    const cs = this.s.clusterSize;
    for (let done = 0; done < data.length; done += cs) {
      const guestCluster = (offset + done) / cs;
      let cluster = data.subarray(done, done + cs);
      if (cluster.length < cs) {
        const padded = new Uint8Array(cs);
        padded.set(cluster);
        cluster = padded;
      }
      this.writeCompressedCluster(guestCluster, cluster);
    }
    this.inflated = undefined;
  }

  readRange(out: Uint8Array, offset: number): void {
    const cs = this.s.clusterSize;
    this.runEnd = -1;
    // Clusters whose host data lie one after another are read by one pread, as QEMU reads a
    // host-contiguous run in one request (qcow2_co_preadv_part over qcow2_get_host_offset's run).
    // Plain data only (no subclusters; encrypted: whole sectors, with the key, on a device without
    // debug events), the run decrypted in one pass (its sectors consecutive on the host and in the
    // guest); anything else reads the pending run first, so reads and blkdebug events keep their order.
    const cipher = this.s.cipher;
    const plain =
      !this.s.extendedL2 &&
      (this.s.header.cryptMethod === C.QCOW_CRYPT_NONE ||
        (cipher !== undefined && !this.s.device.event && !this.s.data.event));
    let runAt = 0;
    let runFrom = 0;
    let runLen = 0;
    const readRun = (): void => {
      if (runLen === 0) return;
      const n = runLen;
      runLen = 0;
      const dst = out.subarray(runFrom, runFrom + n);
      this.s.data.read(dst, runAt);
      cipher?.decrypt(dst, runAt, offset + runFrom);
    };
    let done = 0;
    while (done < out.length) {
      const pos = offset + done;
      const guestCluster = Math.floor(pos / cs);
      const inCluster = pos - guestCluster * cs;
      const n = Math.min(cs - inCluster, out.length - done);
      const e = this.s.map.lookup(guestCluster);
      if (e.type === ClusterType.Unallocated) {
        // A run of unallocated clusters with nothing recorded (no L2 table, or all-zero entries:
        // the classifier block status uses) reads in one step — zeros, or one read of the backing
        // disk — as QEMU reads a run qcow2_get_host_offset returns in one request. Its cost is
        // the number of runs, not of clusters (a sparse image, a disk over a raw backing file).
        const run = this.s.map.unallocatedRun(guestCluster, Math.ceil((inCluster + out.length - done) / cs));
        if (run > 0) {
          readRun();
          const m = Math.min(run * cs - inCluster, out.length - done);
          this.readBacking(pos, out.subarray(done, done + m));
          done += m;
          continue;
        }
      }
      if (e.type === ClusterType.ZeroPlain) {
        // A run of plain zero clusters (bare zero-flag entries) of one L2 table: zeros in one fill.
        const run = this.s.map.plainZeroRun(guestCluster, Math.ceil((inCluster + out.length - done) / cs));
        if (run > 0) {
          readRun();
          const m = Math.min(run * cs - inCluster, out.length - done);
          out.fill(0, done, done + m);
          done += m;
          continue;
        }
      }
      if (
        plain &&
        e.type === ClusterType.Normal &&
        (!cipher || (inCluster % C.SECTOR_SIZE === 0 && n % C.SECTOR_SIZE === 0))
      ) {
        this.checkHostCluster(e, guestCluster);
        const host = e.hostOffset + inCluster;
        if (runLen > 0 && runAt + runLen !== host) readRun();
        this.dataEvent('read_aio', host, n);
        if (runLen === 0) {
          runAt = host;
          runFrom = done;
        }
        runLen += n;
      } else {
        readRun();
        this.readCluster(e, guestCluster, inCluster, out.subarray(done, done + n));
      }
      done += n;
    }
    readRun();
  }

  readCluster(e: L2Entry, guestCluster: number, inCluster: number, dst: Uint8Array): void {
    if (this.s.extendedL2 && e.type !== ClusterType.Compressed) {
      this.readSubclusters(e, guestCluster, inCluster, dst);
      return;
    }
    switch (e.type) {
      case ClusterType.Normal:
        this.checkHostCluster(e, guestCluster);
        this.readData(dst, e.hostOffset + inCluster, guestCluster * this.s.clusterSize + inCluster);
        return;
      case ClusterType.ZeroPlain:
      case ClusterType.ZeroAlloc:
        dst.fill(0);
        return;
      case ClusterType.Compressed:
        dst.set(this.inflate(e).subarray(inCluster, inCluster + dst.length));
        return;
      case ClusterType.Unallocated:
        this.readBacking(guestCluster * this.s.clusterSize + inCluster, dst);
        return;
    }
  }

  /** Extended L2 (qcow2.txt "Extended L2 Entries"): each subcluster has its own state. */
  private readSubclusters(e: L2Entry, guestCluster: number, inCluster: number, dst: Uint8Array): void {
    const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    // QEMU checks the host offset of any entry with a host cluster, whatever the subcluster.
    if (hasHost(e) && subclusterType(e, 0) !== SubclusterType.Invalid) this.checkHostCluster(e, guestCluster);
    for (let done = 0; done < dst.length;) {
      const pos = inCluster + done;
      const i = Math.floor(pos / sc);
      const n = Math.min((i + 1) * sc - pos, dst.length - done);
      const part = dst.subarray(done, done + n);
      switch (subclusterType(e, i)) {
        case SubclusterType.Normal:
          this.checkHostCluster(e, guestCluster);
          this.readData(part, e.hostOffset + pos, guestCluster * this.s.clusterSize + pos);
          break;
        case SubclusterType.ZeroPlain:
        case SubclusterType.ZeroAlloc:
          part.fill(0);
          break;
        case SubclusterType.UnallocatedPlain:
        case SubclusterType.UnallocatedAlloc:
          this.readBacking(guestCluster * this.s.clusterSize + pos, part);
          break;
        default:
          throw new CorruptionError(
            'CORRUPT_SUBCLUSTER',
            // QEMU's words (qcow2_get_host_offset); both numbers printed with %#x (0 without 0x)
            `Invalid cluster entry found  (L2 offset: ${hexAlt(this.l2TableOf(guestCluster))}, L2 index: ${hexAlt(this.s.map.split(guestCluster)[1])})`,
            e.hostOffset,
            { guestCluster, subcluster: i },
          );
      }
      done += n;
    }
  }

  /**
   * QEMU's calculate_l2_meta looks at every cluster a write covers before writing any: an invalid
   * extended L2 entry fails the write (EIO) and marks the image corrupt.
   */
  private refuseInvalidEntries(from: number, end: number): void {
    for (let c = from; c < end; c++) {
      const e = this.s.map.lookup(c);
      if (e.type === ClusterType.Compressed || subclusterType(e, 0) !== SubclusterType.Invalid) continue;
      throw new CorruptionError(
        'CORRUPT_SUBCLUSTER',
        // QEMU's words on its write path (one space before the parenthesis, unlike the read path)
        `Invalid cluster entry found (L2 offset: ${hexAlt(this.l2TableOf(c))}, L2 index: ${hexAlt(this.s.map.split(c)[1])})`,
        e.hostOffset,
        { guestCluster: c, subcluster: 0 },
      );
    }
  }

  /** Host offset of the L2 table that maps a guest cluster. */
  private l2TableOf(guestCluster: number): number {
    return this.s.map.l2OffsetAt(this.s.map.split(guestCluster)[0]);
  }

  private checkHostCluster(e: L2Entry, guestCluster: number): void {
    // QEMU's read path checks alignment only; reserved bits are the checker's business.
    if (e.hostOffset % this.s.clusterSize !== 0) {
      throw new CorruptionError(
        'CORRUPT_L2',
        // QEMU's words (qcow2_get_host_offset), numbers printed with %#x
        `Cluster allocation offset ${hexAlt(e.hostOffset)} unaligned (L2 offset: ${hexAlt(this.l2TableOf(guestCluster))}, L2 index: ${hexAlt(this.s.map.split(guestCluster)[1])})`,
        e.hostOffset,
        { guestCluster },
      );
    }
  }

  /**
   * Unallocated guest bytes (a subcluster, a cluster or a run of clusters): what the backing disk
   * holds there, in one read, and zeros past its end or without one (qcow2.txt: "If a cluster is
   * unallocated, read requests shall read the data from the backing file").
   */
  private readBacking(guestOffset: number, dst: Uint8Array): void {
    const b = this.s.backing;
    if (!b || guestOffset >= b.size) {
      dst.fill(0);
      return;
    }
    const n = Math.min(dst.length, b.size - guestOffset);
    // QEMU raises one read_backing_aio per request it sends down, and a run it finds
    // (qcow2_get_host_offset) ends at the end of its L2 table's range: one event per such range.
    const span = this.s.map.l2Entries * this.s.clusterSize;
    const ranges = Math.floor((guestOffset + n - 1) / span) - Math.floor(guestOffset / span) + 1;
    for (let i = 0; i < ranges; i++) this.s.device.event?.('read_backing_aio');
    b.readInto(dst.subarray(0, n), guestOffset);
    if (n < dst.length) dst.fill(0, n);
  }

  private inflate(e: L2Entry): Uint8Array {
    if (this.inflated?.offset === e.hostOffset) return this.inflated.bytes;
    const len = e.compressedLength;
    // A descriptor may reach past the end of the file: QEMU reads it (bytes past the end read as
    // zeros) and lets the decompressor decide (iotest 214). Its length field cannot exceed this.
    if (len > 2 * this.s.clusterSize + C.SECTOR_SIZE) {
      throw new CorruptionError(
        'COMPRESSED_OUT_OF_RANGE',
        `Compressed cluster of ${len} bytes at 0x${e.hostOffset.toString(16)} lies beyond the end of the image`,
        e.hostOffset,
        { length: len },
      );
    }
    const src = new Uint8Array(len);
    this.s.device.event?.('read_compressed');
    this.s.data.read(src, e.hostOffset);
    let bytes: Uint8Array;
    try {
      bytes = this.s.codec.decompress(src, this.s.clusterSize, e.hostOffset);
    } catch (err) {
      // QEMU's qcow2_co_preadv_compressed: data that does not decompress is an I/O error (EIO)
      // of this read, not a corruption of the image's metadata: the image is not marked corrupt.
      if (!(err instanceof CorruptionError)) throw err;
      throw new IoError(err.code, err.message, { ...err.data, offset: e.hostOffset, errno: 'EIO' });
    }
    this.inflated = { offset: e.hostOffset, bytes };
    return bytes;
  }

  /** The whole guest cluster as it reads now (for copy-on-write). */
  readWholeCluster(guestCluster: number, e: L2Entry): Uint8Array {
    const buf = new Uint8Array(this.s.clusterSize);
    const start = guestCluster * this.s.clusterSize;
    // Clusters past the disk belong to the VM-state area (vm-state.ts): all of each is data.
    const visible =
      start >= this.s.size ? this.s.clusterSize : Math.min(this.s.clusterSize, this.s.size - start);
    if (visible > 0) this.readCluster(e, guestCluster, 0, buf.subarray(0, visible));
    return buf;
  }

  /**
   * The whole guest cluster as it reads now (zeros: `zeros`) except bytes [from, from + length),
   * which the caller fills: the copy-on-write of a partial write reads only what the write does
   * not cover (QEMU's cow_start and cow_end regions), into a cluster buffer kept for it (the device
   * below keeps no reference to what it writes). On a device with debug events, the whole cluster
   * in one read into a buffer of its own, as before.
   */
  private readAround(
    guestCluster: number,
    e: L2Entry,
    from: number,
    length: number,
    zeros: boolean,
  ): Uint8Array {
    const cs = this.s.clusterSize;
    if (zeros) return this.cowBuffer().fill(0);
    if (this.s.device.event || this.s.data.event) return this.readWholeCluster(guestCluster, e);
    const buf = this.cowBuffer();
    const start = guestCluster * cs;
    // Clusters past the disk belong to the VM-state area (vm-state.ts): all of each is data.
    const visible = start >= this.s.size ? cs : Math.min(cs, this.s.size - start);
    const headEnd = Math.min(from, visible);
    const tailStart = Math.min(from + length, visible);
    if (headEnd > 0) this.readCluster(e, guestCluster, 0, buf.subarray(0, headEnd));
    if (tailStart < visible) this.readCluster(e, guestCluster, tailStart, buf.subarray(tailStart, visible));
    buf.fill(0, visible); // (what the disk does not reach reads as zeros, as readWholeCluster's)
    return buf;
  }

  /** The cluster-sized buffer of copy-on-write (readAround), made on first use. */
  private cowBuffer(): Uint8Array {
    if (this.cow.length !== this.s.clusterSize) this.cow = new Uint8Array(this.s.clusterSize);
    return this.cow;
  }

  // ---------------------------------------------------------------- writes

  /** Write `src` at `inCluster` of a guest cluster, allocating / copying on write as needed. */
  writeCluster(guestCluster: number, inCluster: number, src: Uint8Array): void {
    const e = this.s.map.lookup(guestCluster);
    const cs = this.s.clusterSize;
    if (this.s.extendedL2 && e.type !== ClusterType.Compressed) {
      this.writeSubclusters(guestCluster, e, inCluster, src);
      return;
    }
    if (e.type === ClusterType.Normal && this.ownsExclusively(e)) {
      this.checkHostCluster(e, guestCluster);
      this.writeData(src, e.hostOffset + inCluster, guestCluster * cs + inCluster);
      if (!e.copied)
        this.setEntry(guestCluster, { type: ClusterType.Normal, hostOffset: e.hostOffset, copied: true });
      return;
    }
    // The L2 table first (QEMU's order: a fresh image gets its first L2 table at 0x40000 and the
    // first data cluster after it).
    this.s.map.slotForWrite(guestCluster);
    const guestOffset = guestCluster * cs;
    const readsAsZero =
      e.type === ClusterType.ZeroAlloc ||
      e.type === ClusterType.ZeroPlain ||
      (e.type === ClusterType.Unallocated && (!this.s.backing || guestOffset >= this.s.backing.size));
    const keep = e.type === ClusterType.ZeroAlloc && this.ownsExclusively(e);
    // A preallocated zero cluster keeps its host cluster.
    const host = keep ? e.hostOffset : this.allocData(guestCluster);
    try {
      if (src.length === cs) {
        this.writeData(src, host, guestOffset);
      } else if (readsAsZero && host >= this.s.data.size() && !this.s.cipher) {
        // A fresh cluster past the end of the file already reads as zeros: write only the data
        // and extend the file over the rest (sparse), instead of writing a cluster of zeros.
        this.dataEvent('write_aio', host + inCluster, src.length);
        this.s.data.write(src, host + inCluster);
        if (this.s.data.size() < host + cs) this.s.data.truncate(host + cs);
      } else {
        // Copy-on-write: the parts of the cluster not written come from what it reads as now.
        const full = this.readAround(guestCluster, e, inCluster, src.length, readsAsZero);
        full.set(src, inCluster);
        this.writeData(full, host, guestOffset);
      }
    } catch (err) {
      // The data never reached its cluster: the new cluster goes back (qcow2_alloc_cluster_abort;
      // clusters of an external data file are not refcounted) and the old mapping stays.
      if (!keep && !this.s.map.dataFile) {
        this.s.rc.undoAlloc(host / cs);
        this.s.alloc.freed(host / cs);
      }
      throw err;
    }
    if (!keep) this.releaseEntry(e);
    this.setEntry(guestCluster, {
      type: ClusterType.Normal,
      hostOffset: host,
      copied: true,
      allocBitmap: ALL_SUBCLUSTERS,
    });
  }

  /**
   * Subcluster-granular write: only the subclusters the write touches become allocated; a partly
   * written subcluster is completed from what it reads as now (copy-on-write per subcluster).
   */
  private writeSubclusters(guestCluster: number, e: L2Entry, inCluster: number, src: Uint8Array): void {
    const sc = this.s.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    let first = Math.floor(inCluster / sc);
    let last = Math.floor((inCluster + src.length - 1) / sc);
    if (hasHost(e) && !this.ownsExclusively(e) && e.allocBitmap !== 0) {
      // Copy-on-write of a shared cluster (QEMU's calculate_l2_meta without keep_old): the copied
      // range reaches out to the first and the last allocated subcluster, and all of it becomes
      // allocated in the new cluster.
      first = Math.min(first, 31 - Math.clz32(e.allocBitmap & -e.allocBitmap));
      last = Math.max(last, 31 - Math.clz32(e.allocBitmap));
    }
    const start = first * sc;
    const end = (last + 1) * sc;
    const buf = new Uint8Array(end - start);
    if (inCluster > start) this.readCluster(e, guestCluster, start, buf.subarray(0, inCluster - start));
    if (inCluster + src.length < end)
      this.readCluster(e, guestCluster, inCluster + src.length, buf.subarray(inCluster + src.length - start));
    buf.set(src, inCluster - start);
    let host = e.hostOffset;
    if (!hasHost(e) || !this.ownsExclusively(e)) {
      this.s.map.slotForWrite(guestCluster);
      const fresh = this.allocData(guestCluster);
      if (hasHost(e)) this.releaseEntry(e); // shared with a snapshot: the copied range is in buf
      host = fresh;
    }
    this.writeData(buf, host + start, guestCluster * this.s.clusterSize + start);
    const mask = subclusterMask(first, last);
    // In place over subclusters that are all allocated already: QEMU (calculate_l2_meta's
    // skip_cow) leaves the L2 entry as it is, stray bits included.
    if (host === e.hostOffset && e.copied && (e.allocBitmap & mask) >>> 0 === mask >>> 0) return;
    this.setEntry(guestCluster, {
      type: ClusterType.Normal,
      hostOffset: host,
      copied: true,
      allocBitmap: (e.allocBitmap | mask) >>> 0,
      zeroBitmap: (e.zeroBitmap & ~mask) >>> 0,
    });
  }

  ownsExclusively(e: L2Entry): boolean {
    // Data file clusters are not refcounted; each belongs to exactly one guest cluster.
    return e.copied || this.s.map.dataFile || this.s.rc.get(e.hostOffset / this.s.clusterSize) === 1;
  }

  /**
   * A host cluster for guest data. With an external data file, QEMU maps guest cluster N to host
   * offset N * cluster_size of the data file, and the qcow2 refcounts do not cover it.
   */
  allocData(guestCluster: number): number {
    return this.s.map.dataFile ? guestCluster * this.s.clusterSize : this.s.alloc.allocInRun();
  }

  requireCipher(): DataCipher | undefined {
    if (this.s.header.cryptMethod !== C.QCOW_CRYPT_NONE && !this.s.cipher) {
      throw new Qcow2Error(
        'MISSING_SECRET',
        `Image '${this.s.filename}' is encrypted: a key secret is needed (encrypt.key-secret)`,
        { filename: this.s.filename },
      );
    }
    return this.s.cipher;
  }

  /** Read guest data from a host offset, decrypting whole sectors as needed. */
  readData(dst: Uint8Array, host: number, guest: number): void {
    const cipher = this.requireCipher();
    this.dataEvent('read_aio', host, dst.length);
    if (!cipher) {
      this.s.data.read(dst, host);
      return;
    }
    const S = C.SECTOR_SIZE;
    const head = host % S;
    const start = host - head;
    const buf = new Uint8Array(Math.ceil((head + dst.length) / S) * S);
    this.s.data.read(buf, start);
    cipher.decrypt(buf, start, guest - head);
    dst.set(buf.subarray(head, head + dst.length));
  }

  /** Write guest data at a host offset, encrypting whole sectors (read-modify-write at the edges). */
  writeData(src: Uint8Array, host: number, guest: number): void {
    const cipher = this.requireCipher();
    this.dataEvent('write_aio', host, src.length);
    if (!cipher) {
      this.s.data.write(src, host);
      return;
    }
    const S = C.SECTOR_SIZE;
    const head = host % S;
    const start = host - head;
    const buf = new Uint8Array(Math.ceil((head + src.length) / S) * S);
    if (head !== 0 || buf.length !== src.length) this.readData(buf, start, guest - head);
    buf.set(src, head);
    cipher.encrypt(buf, start, guest - head);
    this.s.data.write(buf, start);
  }

  setEntry(guestCluster: number, w: L2Write): void {
    const slot = this.s.map.slotForWrite(guestCluster);
    this.s.map.setEntry(slot, w);
  }

  /** Drop the reference an L2 entry holds (deferred until the tables are on disk). */
  releaseEntry(e: L2Entry): void {
    if (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) {
      if (!this.s.map.dataFile) this.s.rc.decrement(e.hostOffset / this.s.clusterSize, 1);
    } else if (e.type === ClusterType.Compressed) {
      const cs = this.s.clusterSize;
      const first = Math.floor(e.hostOffset / cs);
      const last = Math.floor((e.hostOffset + e.compressedLength - 1) / cs);
      for (let c = first; c <= last; c++) this.s.rc.decrement(c, 1);
    }
  }

  writeCompressedCluster(guestCluster: number, cluster: Uint8Array): void {
    const packed = this.s.codec.compress(cluster);
    if (!packed) {
      // Does not compress below a cluster: stored uncompressed (QEMU's rule).
      this.writeCluster(guestCluster, 0, cluster);
      return;
    }
    const e = this.s.map.lookup(guestCluster);
    this.s.map.slotForWrite(guestCluster);
    const host = this.s.alloc.allocBytes(packed.length);
    this.s.data.event?.('write_compressed');
    this.s.data.write(packed, host);
    const sectors = Math.floor((host + packed.length - 1) / C.SECTOR_SIZE) - Math.floor(host / C.SECTOR_SIZE);
    this.releaseEntry(e);
    this.setEntry(guestCluster, { type: ClusterType.Compressed, hostOffset: host, copied: false, sectors });
  }
}

/** printf's %#x: 0 as "0", anything else with a 0x prefix. */
function hexAlt(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}
