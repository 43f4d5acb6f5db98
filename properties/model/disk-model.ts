/**
 * The model a run checks against: the reference disk, one copy per snapshot, and the few facts a
 * command needs to choose legal arguments (cluster size for discard granularity, which clusters may
 * hold data so a compressed write is legal for QEMU, which refusals QEMU documents).
 */
import { ReferenceDisk, type PatternRun } from './reference-disk.ts';
import { clusterSizeOf, type ImageLayout } from '../layout.ts';
import { VmStateModel } from './vm-state.ts';
import { BitmapsModel } from './bitmaps.ts';
import { type AioWrite, type BackingStep, type WriteStep } from '../steps.ts';
import { ClusterRanges } from './cluster-ranges.ts';
import { stampInto } from './stamp.ts';
import { baseDisk, commitInto, differingClusters, initialBase, type BaseFile } from './backing-files.ts';

export interface SnapshotCopy {
  name: string;
  disk: ReferenceDisk;
  maybeAllocated: ClusterRanges;
}

/**
 * What the model expects of this implementation beyond the plain disk: behaviours it declares
 * (capabilities: deliberate differences, modelled as expected outcomes) and the steering conditions
 * of enabled known bugs (properties/known-bugs/; all off with `--known-bugs none`).
 */
export interface KnownQuirks {
  /** Steering (known bug qemu-7.2-stale-tail-after-shrink-grow): shrinks stay cluster-aligned. */
  clusterAlignedShrink: boolean;
  /** Steering (known bug qemu-7.2-refused-snapshot-leaks-cluster): refused creations are not attempted. */
  skipRefusedSnapshotCreate: boolean;
  /**
   * Steering (known bug qemu-7.2-amend-refcount-bits-spins): no refcount_bits amend of an image
   * with clusters of 256 KiB or more, where qemu-img amend 7.2 spins for minutes.
   */
  noRefcountWidthAmendLargeClusters: boolean;
  /**
   * Declared (QEMU): a revert raises the refcounts of the snapshot's tree before lowering the
   * active tree's, so with a narrow refcount width it refuses a revert whose intermediate count
   * overflows; such reverts have no certain outcome and are not attempted.
   */
  revertRaisesRefcountsFirst: boolean;
  /**
   * Declared (QEMU): growing a v2 image whose backing file is longer than the current size may be
   * refused ("Failed to zero out new clusters": v2 has no zero clusters); not attempted.
   */
  v2GrowOverLongerBackingRefused: boolean;
}

/** No steering, no declared differences (the engine; scripts). */
/**
 * The fewest bytes one compressed cluster's payload takes (qcow2_alloc_bytes packs them byte by
 * byte): a raw deflate stream of one fixed-Huffman block holding one literal is 17 bits; a zstd
 * frame is longer.
 */
const MIN_COMPRESSED_BYTES = 3;

export const NO_QUIRKS: KnownQuirks = {
  clusterAlignedShrink: false,
  skipRefusedSnapshotCreate: false,
  noRefcountWidthAmendLargeClusters: false,
  revertRaisesRefcountsFirst: false,
  v2GrowOverLongerBackingRefused: false,
};

export class DiskModel {
  /** (Replaced by `amended` after a qemu-img amend step.) */
  layout: ImageLayout;
  readonly clusterSize: number;
  disk: ReferenceDisk;
  readonly snapshots = new Map<string, SnapshotCopy>();
  /** Clusters that may have a host cluster (conservative: may over-approximate, never under). */
  maybeAllocated = new ClusterRanges();
  /**
   * Clusters whose last write was a compressed write (so certainly a compressed entry): a zero
   * write frees them even without unmap (QEMU's zero_in_l2_slice). Kept only where certain: snapshot
   * switches, converts and amends drop it (the clusters then stay counted as possibly allocated).
   */
  private surelyCompressed = new ClusterRanges();
  /** Anything ever written, zeroed or compressed (refcount_bits=1 then refuses snapshots). */
  touched = false;
  /** A compressed write ever happened (several compressed clusters share host clusters' refcounts). */
  compressedEver = false;
  /**
   * An upper bound on the compressed clusters any one host cluster holds: guest clusters ever
   * written compressed (a convert -c starts over with the whole disk). Their refcounts add up
   * there, so a snapshot or a revert can overflow a refcount_bits=8/16 host cluster.
   */
  compressedClusters = 0;
  private snapshotCounter = 0;
  /** The highest write number used so far (stamped writes are numbered 1, 2, …). */
  private writeCounter = 0;
  /** Where each stamped write went (explains mismatches). */
  private readonly writeRanges = new Map<number, { offset: number; length: number }>();
  /** The last few ranges written (for `recent` placements). */
  recent: { offset: number; length: number }[] = [];
  /** Byte values ever written with `-P` (a mismatch reading one of them is attributed to a pattern write). */
  readonly patternsWritten = new Set<number>();
  readonly quirks: KnownQuirks;
  /** The persistent dirty bitmaps' dirty sets (model/bitmaps.ts). */
  bitmaps: BitmapsModel;
  /** The image's current backing file (model/backing-files.ts); undefined: none. */
  base: BaseFile | undefined;
  /** Other files made in the image's directory for a later rebase, by name. */
  files = new Map<string, BaseFile>();
  /** Counter for the names of those files (b2.img, b3.img, …). */
  private fileCounter = 1;
  /** The VM-state area (model/vm-state.ts). */
  vmState = new VmStateModel();

  constructor(layout: ImageLayout, quirks: KnownQuirks) {
    this.layout = layout;
    this.clusterSize = clusterSizeOf(layout);
    this.disk = new ReferenceDisk(layout.size);
    this.quirks = quirks;
    this.bitmaps = new BitmapsModel(layout.bitmaps);
    this.base = initialBase(layout.backing);
    // The disk starts as the backing file's content, cut at the image's size (zeros beyond its end).
    for (const w of layout.backing?.writes ?? []) {
      const end = Math.min(w.offset + w.length, layout.backing!.size, layout.size);
      if (end > w.offset) {
        this.disk.fill(w.offset, end - w.offset, w.pattern);
        // (`recent` placements start over the backing file's data: partial writes there need COW)
        this.recent.push({ offset: w.offset, length: end - w.offset });
      }
    }
  }

  get size(): number {
    return this.disk.size;
  }

  /** The name the next snapshot creation uses (pure: creating it advances the counter). */
  nextSnapshotName(): string {
    return `s${this.snapshotCounter + 1}`;
  }

  /** An independent copy (chunks shared copy-on-write), for resolving multi-operation steps. */
  clone(): DiskModel {
    const copy = new DiskModel(this.layout, this.quirks);
    copy.disk = this.disk.clone();
    for (const [name, snap] of this.snapshots) copy.snapshots.set(name, snap);
    copy.maybeAllocated = this.maybeAllocated.clone();
    copy.surelyCompressed = this.surelyCompressed.clone();
    copy.touched = this.touched;
    copy.compressedEver = this.compressedEver;
    copy.compressedClusters = this.compressedClusters;
    copy.snapshotCounter = this.snapshotCounter;
    copy.bitmaps = this.bitmaps.clone();
    copy.vmState = this.vmState.clone();
    copy.writeCounter = this.writeCounter;
    copy.recent = [...this.recent];
    for (const [id, r] of this.writeRanges) copy.writeRanges.set(id, r);
    for (const p of this.patternsWritten) copy.patternsWritten.add(p);
    copy.base = this.base && { ...this.base, disk: this.base.disk.clone() };
    for (const [n, f] of this.files) copy.files.set(n, { ...f, disk: f.disk.clone() });
    copy.fileCounter = this.fileCounter;
    return copy;
  }

  /** Keep generated names fresh after a replay created names by itself. */
  noteSnapshotName(name: string): void {
    const m = /^s(\d+)$/.exec(name);
    if (m) this.snapshotCounter = Math.max(this.snapshotCounter, Number(m[1]));
  }

  /** The number the next stamped write gets (pure: performing it advances the counter). */
  nextWriteId(): number {
    return this.writeCounter + 1;
  }

  /** The highest write number performed so far. */
  get lastWriteId(): number {
    return this.writeCounter;
  }

  write(step: WriteStep): void {
    this.store(step);
  }

  private store(step: WriteStep): void {
    if (step.stamp !== undefined) {
      this.writeCounter = Math.max(this.writeCounter, step.stamp);
      this.writeRanges.set(step.stamp, { offset: step.offset, length: step.length });
      const id = step.stamp;
      this.disk.writeWith(step.offset, step.length, (dst, dstAt, from, to) =>
        stampInto(dst, dstAt, id, step.offset, from, to),
      );
    } else {
      this.patternsWritten.add(step.pattern);
      this.disk.fill(step.offset, step.length, step.pattern);
    }
    this.markAllocated(step.offset, step.length);
    this.touched = true;
    this.recent = [{ offset: step.offset, length: step.length }, ...this.recent.slice(0, 7)];
  }

  writeRange(id: number): { offset: number; length: number } | undefined {
    return this.writeRanges.get(id);
  }

  /** The model's bytes of a range. */
  read(offset: number, length: number): Uint8Array {
    return this.disk.read(offset, length);
  }

  /**
   * Which entries keep or get a host cluster, as QEMU 7.2's qcow2_co_pwrite_zeroes does it (what
   * decides compressedWriteLegal). v2 has no zero flag: with a backing file explicit zeros
   * (allocated), without one whole clusters are deallocated and the rest is as v3. v3: the block
   * layer cuts the request at the zero-write alignment (the subcluster; the cluster without
   * extended L2: bdrv_co_do_pwrite_zeroes), so an unaligned head and tail each reach qcow2 alone and
   * the aligned bulk in one piece; a tail that ends at the disk's end counts as aligned there. An
   * unaligned head or tail is zeroized when the rest of its subcluster already reads as zeros by
   * block status and has no host cluster, else written as explicit zeros (allocating). An aligned
   * piece is zeroized in metadata: whole clusters (zero_in_l2_slice) lose their host cluster when
   * unmapping or when compressed, and otherwise keep whatever they had; partial clusters
   * (zero_l2_subclusters) only change bits, except a compressed one, which QEMU cannot zeroize in
   * part (-ENOTSUP): the whole piece is then written as explicit zeros. Without a backing file an
   * entry without a host cluster reads as zeros; with one the model does not know the block status
   * through the chain and counts the (sub)cluster as allocated (conservative: QEMU may still
   * zeroize it when the backing file or the entry's zero bits read as zeros there).
   */
  writeZeroes(offset: number, length: number, unmap: boolean): void {
    this.disk.fill(offset, length, 0);
    this.touched = true;
    if (length === 0) return;
    // v2: no zero flag; with a backing file every zero is written explicitly
    const v2 = this.layout.compat === '0.10';
    if (v2 && this.base !== undefined) {
      this.markAllocated(offset, length);
      return;
    }
    const cs = this.clusterSize;
    const unit = this.layout.extendedL2 ? cs / 32 : cs;
    const end = offset + length;
    const alignedStart = Math.min(end, Math.ceil(offset / unit) * unit);
    const bulkEnd = Math.max(alignedStart, Math.floor(end / unit) * unit);
    // (a tail ending at the disk's end is zeroized as an aligned piece of its own)
    const tailAligned = end === this.size && end > bulkEnd;
    const pieces: [number, number][] = [
      [offset, alignedStart],
      ...(tailAligned ? [] : ([[bulkEnd, end]] as [number, number][])),
    ];
    for (const [from, to] of pieces) {
      if (to <= from) continue;
      const c = Math.floor(from / cs);
      // explicit zeros: a COW from the backing file, or a rewrite of a cluster that has one
      if (this.base !== undefined || this.maybeAllocated.has(c)) this.markAllocated(from, to - from);
    }
    if (bulkEnd > alignedStart) this.zeroizeAligned(alignedStart, bulkEnd, v2, unmap);
    if (tailAligned && end > bulkEnd) this.zeroizeAligned(bulkEnd, end, v2, unmap);
  }

  /** qcow2_subcluster_zeroize of [from, to): `from` on a subcluster boundary, `to` too or the disk's end. */
  private zeroizeAligned(from: number, to: number, v2: boolean, unmap: boolean): void {
    const cs = this.clusterSize;
    const atEnd = to === this.size;
    const firstWhole = Math.ceil(from / cs);
    const endWhole = Math.max(firstWhole, atEnd ? Math.ceil(to / cs) : Math.floor(to / cs));
    const partial: number[] = [];
    if (from % cs !== 0) partial.push(Math.floor(from / cs));
    if (!atEnd && to % cs !== 0 && Math.floor(to / cs) >= firstWhole) partial.push(Math.floor(to / cs));
    // zero_l2_subclusters refuses a compressed cluster (-ENOTSUP): the block layer writes the
    // whole piece as zeros instead. The model knows only surely compressed clusters; any allocated
    // one may be compressed once a compressed write happened (conservative: counted as allocated).
    if (
      partial.some((c) => this.surelyCompressed.has(c) || (this.compressedEver && this.maybeAllocated.has(c)))
    ) {
      this.markAllocated(from, to - from);
      return;
    }
    for (let c = firstWhole; c < endWhole; c++) {
      // (v2 without a backing file: an unallocated cluster reads as zeros, so it is deallocated)
      if (v2 || unmap || this.surelyCompressed.has(c)) {
        this.maybeAllocated.remove(c, c + 1);
        this.surelyCompressed.remove(c, c + 1);
      }
    }
    // partial clusters keep their entry's host cluster (only bits change): nothing to record
  }

  writeCompressed(step: WriteStep): void {
    this.store(step);
    this.compressedEver = true;
    const first = Math.floor(step.offset / this.clusterSize);
    this.compressedClusters += Math.ceil((step.offset + step.length) / this.clusterSize) - first;
    // (a write of exactly one cluster, or of the disk's last partial cluster; every write source
    // compresses, a repeated byte or stamped sectors with a compressible fill: data that did not
    // would be stored as a normal cluster, which a zero write without unmap keeps)
    const c = Math.floor(step.offset / this.clusterSize);
    this.surelyCompressed.add(c, c + 1);
  }

  /** Whole clusters (the last one counts whole up to the end of the disk) read as zeros. */
  discard(offset: number, length: number): void {
    // v2 has no zero clusters: with a backing file QEMU cannot discard (ENOTSUP, ignored): the data stays.
    if (this.discardIgnored()) return;
    const [first, end] = this.wholeClusters(offset, length);
    if (end <= first) return;
    const start = first * this.clusterSize;
    this.disk.fill(start, Math.min(end * this.clusterSize, this.size) - start, 0);
    // QEMU's discard_in_l2_slice: a discarded whole cluster's entry has no host cluster any more
    // (zero flag, all-zero subcluster bits or nothing), extended L2 or not
    this.maybeAllocated.remove(first, end);
    this.surelyCompressed.remove(first, end);
  }

  resize(newSize: number): void {
    const oldSize = this.size;
    this.disk.resize(newSize);
    if (newSize < oldSize) {
      const firstGone = Math.ceil(newSize / this.clusterSize);
      this.maybeAllocated.truncateFrom(firstGone);
      this.surelyCompressed.truncateFrom(firstGone);
      // A shrink inside a cluster: QEMU keeps that cluster as it is (compressed too), but the
      // engine zeroes the cut tail (no stale bytes on a later grow) by rewriting a compressed last
      // cluster as a normal one, which a zero write without unmap then keeps (zero flag with a
      // host offset) and QEMU refuses to compress over (EIO). Not certainly compressed any more.
      if (newSize % this.clusterSize !== 0) this.surelyCompressed.remove(firstGone - 1, firstGone);
    }
    // (growing: the old last cluster may get zeros or VM-state bytes written into it)
    if (newSize > oldSize) this.surelyCompressed.truncateFrom(Math.floor(oldSize / this.clusterSize));
    if (newSize > oldSize && this.base !== undefined && this.base.disk.size > oldSize) {
      // A longer backing file would show through the new area: it is zero-filled (QEMU's
      // bdrv_co_truncate). qcow2_co_truncate writes explicit zeros up to the next subcluster
      // boundary (the cluster boundary without extended L2), so that cluster gets a host cluster
      // (copy-on-write of the data before the old end), and zeroizes the rest: zero clusters or
      // subcluster zero bits without a host cluster, where QEMU 7.2 still accepts a compressed
      // write. v2 has no zero clusters: the engine writes zero-filled clusters (QEMU refuses the
      // growth; test/engine/resize-backing.test.ts).
      const subcluster = this.layout.extendedL2 ? this.clusterSize / 32 : this.clusterSize;
      if (this.layout.compat === '0.10') this.markAllocated(oldSize, newSize - oldSize);
      else if (oldSize % subcluster !== 0) this.markAllocated(oldSize, 1);
    }
  }

  /** After `qemu-img amend`: later steps follow the image's new options. */
  amended(change: Partial<ImageLayout>): void {
    this.surelyCompressed = new ClusterRanges();
    this.layout = { ...this.layout, ...change };
  }

  createSnapshot(name: string): void {
    this.snapshots.set(name, { name, disk: this.disk.clone(), maybeAllocated: this.maybeAllocated.clone() });
    this.noteSnapshotName(name);
  }

  applySnapshot(name: string): void {
    const snap = this.requireSnapshot(name);
    this.disk = snap.disk.clone();
    this.maybeAllocated = snap.maybeAllocated.clone();
    this.surelyCompressed = new ClusterRanges();
  }

  deleteSnapshot(name: string): void {
    this.requireSnapshot(name);
    this.snapshots.delete(name);
  }

  /**
   * After `qemu-img convert` into a new image: the same bytes, no snapshots; any cluster may be
   * allocated (and, with `-c`, compressed).
   */
  converted(compressed: boolean): void {
    this.snapshots.clear();
    const clusters = Math.ceil(this.size / this.clusterSize);
    this.maybeAllocated.add(0, clusters);
    this.surelyCompressed = new ClusterRanges();
    if (compressed) {
      this.compressedEver = true;
      this.compressedClusters = clusters;
    }
  }

  /** The name the next file made for a rebase gets (pure). */
  nextFileName(): string {
    return `b${this.fileCounter + 1}.img`;
  }

  /**
   * A step on backing files (model/backing-files.ts says what each means). The guest's bytes never
   * change; the backing file, the files in the directory and what the image may hold do.
   */
  backingStep(step: BackingStep): void {
    switch (step.kind) {
      case 'base-create':
        this.noteFile(step.name);
        this.files.set(step.name, { name: step.name, format: step.format, disk: baseDisk(step) });
        return;
      case 'base-copy':
        this.noteFile(step.name);
        this.files.set(step.name, {
          name: step.name,
          format: step.format,
          disk: this.requireBase().disk.clone(),
        });
        return;
      case 'rebase': {
        const target = step.name === null ? undefined : this.files.get(step.name);
        if (step.name !== null && !target) throw new Error(`harness: no file '${step.name}' in the model`);
        // safe mode: the image now holds the clusters where the new chain would read otherwise
        if (!step.unsafe)
          for (const c of differingClusters(this.disk, target?.disk, this.clusterSize))
            this.markAllocated(c * this.clusterSize, this.clusterSize);
        if (this.base) this.files.set(this.base.name, this.base);
        if (target) this.files.delete(target.name);
        this.base = target && { ...target, format: step.format ?? target.format };
        return;
      }
      case 'commit':
        // (the emptied image may still hold clusters in the model's conservative view: kept)
        commitInto(this.requireBase().disk, this.disk);
        return;
    }
  }

  requireBase(): BaseFile {
    if (!this.base) throw new Error('harness: the model has no backing file');
    return this.base;
  }

  private noteFile(name: string): void {
    const m = /^b(\d+)\.img$/.exec(name);
    if (m) this.fileCounter = Math.max(this.fileCounter, Number(m[1]));
  }

  /** An `aio_write` batch that landed in `order` (request indices): the writes, serially. */
  aioBatch(writes: readonly AioWrite[], order: readonly number[]): void {
    for (const i of order) this.write({ kind: 'write', ...writes[i] });
  }

  requireSnapshot(name: string): SnapshotCopy {
    const snap = this.snapshots.get(name);
    if (!snap) throw new Error(`harness: no snapshot '${name}' in the model`);
    return snap;
  }

  runs(offset: number, length: number): PatternRun[] {
    return this.disk.runs(offset, length);
  }

  /** QEMU refuses a snapshot that would need refcount 2 when refcount_bits=1. */
  snapshotCreateRefused(): boolean {
    return this.layout.refcountBits === 1 && this.touched;
  }

  /**
   * Whether a new snapshot surely fits the refcount width: every cluster's refcount is at most
   * 1 + the number of snapshots (without compression), and one more must not exceed the maximum.
   * Compressed clusters share host clusters, whose refcount counts every compressed cluster in
   * them (qcow2_alloc_bytes fills one up to refcount_max), and a snapshot adds one per L2 entry:
   * QEMU 7.2 refuses it with EINVAL (update_refcount overflow) once a host cluster would pass the
   * maximum, e.g. 8 KiB clusters, refcount_bits=8, one `write -c` of 4 MiB of a repeated byte.
   * Where that cannot be ruled out the answer is not certain, so no snapshot is taken.
   */
  snapshotCreateCertain(): boolean {
    if (this.snapshotCreateRefused()) return true;
    return this.refcountsSurelyFit();
  }

  /** Whether a revert surely stays within the refcount width when its tree is raised first. */
  snapshotApplyCertain(): boolean {
    if (!this.quirks.revertRaisesRefcountsFirst) return true;
    return this.refcountsSurelyFit();
  }

  /**
   * Whether raising every refcount the active table holds once more surely fits (snapshot
   * create, and a revert that raises the snapshot's tree first): refcounts reach at most
   * (snapshots + 2) × the compressed clusters one host cluster can hold.
   */
  private refcountsSurelyFit(): boolean {
    const max = 2 ** this.layout.refcountBits - 1;
    const tables = this.snapshots.size + 2;
    if (!this.compressedEver) return this.layout.refcountBits >= 8 || tables <= max;
    // (narrow widths with compressed clusters stay uncertain, as before)
    if (this.layout.refcountBits < 8) return false;
    // A host cluster holds at most every compressed cluster ever written, and at most one per
    // MIN_COMPRESSED_BYTES of it (plus the one that spills in from the cluster before).
    const perHost = Math.min(
      Math.max(this.compressedClusters, 1),
      Math.floor(this.clusterSize / MIN_COMPRESSED_BYTES) + 1,
    );
    return perHost * tables <= max;
  }

  /** A discard is a no-op: v2 with a backing file. */
  discardIgnored(): boolean {
    return this.layout.compat === '0.10' && this.base !== undefined;
  }

  /** QEMU: "Can't resize a v2 image which has snapshots". */
  resizeRefused(_newSize: number): boolean {
    return this.layout.compat === '0.10' && this.snapshots.size > 0;
  }

  /**
   * Growing a v2 image over a longer backing file has no certain outcome where declared
   * (KnownQuirks.v2GrowOverLongerBackingRefused: QEMU refuses some such growths, "Failed to zero
   * out new clusters", and accepts others): such growths are not attempted.
   */
  growUncertain(newSize: number): boolean {
    const b = this.base;
    return (
      this.quirks.v2GrowOverLongerBackingRefused &&
      this.layout.compat === '0.10' &&
      b !== undefined &&
      b.disk.size > this.size &&
      newSize > this.size
    );
  }

  /** A compressed write is legal for QEMU 7.2 only into clusters without a host cluster. */
  compressedWriteLegal(offset: number, length: number): boolean {
    const first = Math.floor(offset / this.clusterSize);
    const end = Math.ceil((offset + length) / this.clusterSize);
    return !this.maybeAllocated.intersects(first, end);
  }

  /** Clusters [first, end) entirely inside the range (the disk's partial last cluster counts). */
  wholeClusters(offset: number, length: number): [number, number] {
    const first = Math.ceil(offset / this.clusterSize);
    const rangeEnd = offset + length;
    const end =
      rangeEnd === this.size
        ? Math.ceil(rangeEnd / this.clusterSize)
        : Math.floor(rangeEnd / this.clusterSize);
    return [first, Math.max(first, end)];
  }

  private markAllocated(offset: number, length: number): void {
    if (length === 0) return;
    const first = Math.floor(offset / this.clusterSize);
    const end = Math.ceil((offset + length) / this.clusterSize);
    this.maybeAllocated.add(first, end);
    this.surelyCompressed.remove(first, end);
  }
}
