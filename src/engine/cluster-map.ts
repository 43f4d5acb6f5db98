/**
 * Guest → host cluster mapping: the active L1 table (held in memory) and L2 tables (through a
 * cache). It finds, creates and copies-on-write L2 tables, reads and writes L2 entries, grows and
 * shrinks the L1 table, keeps the COPIED flags (bit 63 of L1/L2 entries) and counts the references
 * an L1 tree holds. It never touches refcounts itself: allocation, freeing, refcount queries and
 * the crash-safe L1 relocation are the metadata writer's hooks.
 */
import { CorruptionError } from '../errors.ts';
import type { BlockDevice } from '../io/device.ts';
import {
  ClusterType,
  readL1,
  readL2,
  writeL1,
  writeL2,
  type L2Entry,
  type L2Write,
} from '../format/tables.ts';
import { TableCache, type WriteBackTarget } from './cache.ts';
import { firstNonZeroEntry } from '../format/zero-entries.ts';

export interface MapHooks {
  alloc(n: number): number;
  /** Drop one reference to the cluster at `offset` (deferred). */
  free(offset: number): void;
  refcount(offset: number): number;
  /** Put a new L1 table on disk and switch the header to it (metadata writer's relocation). */
  relocateL1(table: Uint8Array, old: { offset: number; clusters: number }): { offset: number };
}

export interface L2Slot {
  /** Host offset of the L2 table. */
  l2Offset: number;
  table: Uint8Array;
  index: number;
}

const UNALLOCATED: L2Entry = {
  type: ClusterType.Unallocated,
  hostOffset: 0,
  copied: false,
  compressedLength: 0,
  reserved: false,
  allocBitmap: 0,
  zeroBitmap: 0,
};

export class ClusterMap {
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly extendedL2: boolean;
  /** External data file: host offset 0 is a valid data cluster (see readL2). */
  readonly dataFile: boolean;
  /** Entries per L2 table. */
  readonly l2Entries: number;
  private readonly cache: TableCache;
  private l1: Uint8Array;
  private l1Offset: number;
  private l1Changed = false;

  constructor(
    private readonly dev: BlockDevice,
    private readonly hooks: MapHooks,
    opts: {
      clusterBits: number;
      extendedL2: boolean;
      dataFile: boolean;
      l1Offset: number;
      l1Size: number;
      cacheTables: number;
    },
  ) {
    this.clusterBits = opts.clusterBits;
    this.dataFile = opts.dataFile;
    this.clusterSize = 2 ** opts.clusterBits;
    this.extendedL2 = opts.extendedL2;
    this.l2Entries = this.clusterSize / (opts.extendedL2 ? 16 : 8);
    this.l1Offset = opts.l1Offset;
    this.l1 = new Uint8Array(opts.l1Size * 8);
    if (opts.l1Size > 0) dev.read(this.l1, opts.l1Offset);
    this.cache = new TableCache(dev, this.clusterSize, opts.cacheTables, 'L2');
  }

  get l1Size(): number {
    return this.l1.length / 8;
  }

  /** Guest cluster index → (L1 index, L2 index). */
  split(guestCluster: number): [number, number] {
    return [Math.floor(guestCluster / this.l2Entries), guestCluster % this.l2Entries];
  }

  /** L2 offset of entry `l1Index` of an L1 table (the active one by default), validated. */
  l2OffsetAt(l1Index: number, l1: Uint8Array = this.l1, l1Offset = this.l1Offset): number {
    if (l1Index * 8 >= l1.length) return 0;
    const e = readL1(l1, l1Index);
    if (e.l2Offset !== 0 && (e.l2Offset % this.clusterSize !== 0 || e.reserved)) {
      throw new CorruptionError(
        'CORRUPT_L1',
        `L1 entry ${l1Index} points to an invalid L2 table offset 0x${e.l2Offset.toString(16)}`,
        l1Offset + l1Index * 8,
        { l1Index },
      );
    }
    if (e.l2Offset !== 0 && e.l2Offset + this.clusterSize > this.dev.size() && !this.cache.has(e.l2Offset)) {
      throw new CorruptionError(
        'CORRUPT_L1',
        `L2 table at 0x${e.l2Offset.toString(16)} lies beyond the end of the image`,
        l1Offset + l1Index * 8,
        { l1Index },
      );
    }
    return e.l2Offset;
  }

  /**
   * How many guest clusters from `guestCluster` on (at most `max`) are unallocated with nothing
   * recorded: no L2 table maps them (a whole L1 entry's range in one step), or their L2 entry is
   * all zeros (a tight scan of the raw table; extended L2: both bitmaps zero too). They read from
   * the backing file, or as zeros. 0 when the first one is not. QEMU counts such runs the same way
   * (qcow2_get_host_offset), so block status costs what is allocated, not the virtual size.
   */
  unallocatedRun(guestCluster: number, max: number): number {
    const entryBytes = this.extendedL2 ? 16 : 8;
    let n = 0;
    while (n < max) {
      const [i1, i2] = this.split(guestCluster + n);
      const l2 = this.l2OffsetAt(i1);
      if (l2 === 0) {
        // This L1 entry's range, and those of the all-zero L1 entries after it (found by memcmp,
        // not one entry at a time: a sparse 2 TiB image has 4096 of them).
        const stop = Math.min(this.l1Size, Math.ceil((guestCluster + max) / this.l2Entries));
        const next = Math.max(i1 + 1, firstNonZeroEntry(this.l1, i1 + 1, stop, 8));
        n += (next - i1) * this.l2Entries - i2;
        continue;
      }
      const table = this.cache.get(l2);
      // Runs of zero entries are found by memcmp (format/zero-entries.ts): a sparse table costs a
      // few native comparisons instead of 64 Ki interpreted byte tests (a CLI command's cold walk).
      const end = Math.min(this.l2Entries, i2 + (max - n));
      const i = firstNonZeroEntry(table, i2, end, entryBytes);
      n += i - i2;
      if (i < end) return n;
    }
    return Math.min(n, max);
  }

  /**
   * How many guest clusters from `guestCluster` on (at most `max`, within its L2 table) are plain
   * zero clusters written as the bare zero flag — entry value 1 (qcow2.txt "Standard Cluster
   * Descriptor": bit 0 set, no host offset, no other bit), what QEMU's zero writes leave. 0 when
   * the first one is not, and always with extended L2 entries (their zeros are in the bitmap).
   */
  plainZeroRun(guestCluster: number, max: number): number {
    if (this.extendedL2) return 0;
    const i1 = Math.floor(guestCluster / this.l2Entries);
    const i2 = guestCluster - i1 * this.l2Entries;
    const l2 = this.l2OffsetAt(i1);
    if (l2 === 0) return 0;
    const t = this.cache.get(l2);
    const end = Math.min(this.l2Entries, i2 + max);
    let i = i2;
    for (; i < end; i++) {
      const o = i * 8;
      if (
        t[o + 7] !== 1 ||
        (t[o]! | t[o + 1]! | t[o + 2]! | t[o + 3]! | t[o + 4]! | t[o + 5]! | t[o + 6]!) !== 0
      )
        break;
    }
    return i - i2;
  }

  /** The L2 entry for a guest cluster (unallocated when no L2 table maps it). */
  lookup(guestCluster: number): L2Entry {
    return this.lookupIn(this.l1, this.l1Offset, guestCluster);
  }

  /** The same through another L1 table (a snapshot's). */
  lookupIn(l1: Uint8Array, l1Offset: number, guestCluster: number): L2Entry {
    // split() without its array: every guest request passes here (no garbage per request).
    const i1 = Math.floor(guestCluster / this.l2Entries);
    const i2 = guestCluster - i1 * this.l2Entries;
    const l2 = this.l2OffsetAt(i1, l1, l1Offset);
    if (l2 === 0) return UNALLOCATED;
    return readL2(this.cache.get(l2), i2, this.clusterBits, this.extendedL2, this.dataFile);
  }

  /**
   * An L2 slot that may be modified for the active L1: allocates a table if none, copies a shared
   * table (refcount > 1) first. The slot's table is valid until the next cache operation.
   */
  slotForWrite(guestCluster: number): L2Slot {
    const i1 = Math.floor(guestCluster / this.l2Entries);
    const i2 = guestCluster - i1 * this.l2Entries;
    if (i1 >= this.l1Size) throw new Error(`internal: L1 index ${i1} beyond L1 size ${this.l1Size}`);
    const old = this.l2OffsetAt(i1);
    const e = readL1(this.l1, i1);
    if (old !== 0 && e.copied) return { l2Offset: old, table: this.cache.get(old), index: i2 };
    if (old !== 0 && this.hooks.refcount(old) === 1) {
      // Refcount says exclusive; the COPIED flag was stale (e.g. after a snapshot was deleted).
      writeL1(this.l1, i1, old, true);
      this.l1Changed = true;
      return { l2Offset: old, table: this.cache.get(old), index: i2 };
    }
    const fresh = this.hooks.alloc(1);
    const table = new Uint8Array(this.clusterSize);
    if (old !== 0) {
      table.set(this.cache.get(old));
      this.hooks.free(old);
    }
    this.cache.put(fresh, table);
    writeL1(this.l1, i1, fresh, true);
    this.l1Changed = true;
    return { l2Offset: fresh, table, index: i2 };
  }

  setEntry(slot: L2Slot, e: L2Write): void {
    // The slot's table may have been evicted by an allocation in between: fetch it again.
    const table = this.cache.get(slot.l2Offset);
    writeL2(table, slot.index, this.clusterBits, this.extendedL2, e);
    this.cache.markDirty(slot.l2Offset);
    // An entry mapping host data (a new cluster, newly allocated subclusters, copy-on-write
    // written around the request): that data goes to disk before this table does, with a flush
    // between (QEMU's perform_cow → qcow2_cache_depends_on_flush). Else a crash may leave the
    // table pointing at bytes never written there, or past the end of the file when the data
    // write was the one extending it (which `qemu-img check -r all` cannot repair).
    if (e.type === ClusterType.Normal || e.type === ClusterType.Compressed) this.cache.dependOnFlush();
  }

  /** The device holding the data was flushed: an L2 table may be written without another flush. */
  dataFlushed(): void {
    this.cache.flushed();
  }

  // ---------------------------------------------------------------- the L1 table

  /** Where the active L1 table is (for the overlap guard). */
  l1Place(): { offset: number; bytes: number } {
    return { offset: this.l1Offset, bytes: this.l1.length };
  }

  /** A copy of the active L1 table's bytes (a snapshot's new L1). */
  l1Copy(): Uint8Array {
    return this.l1.slice();
  }

  /**
   * L1 growth (qcow2_grow_l1_table): a larger copy goes to new clusters through the metadata
   * writer's relocation (which flushes everything the copy points at first), then replaces ours.
   */
  growL1(entries: number): void {
    const table = new Uint8Array(entries * 8);
    table.set(this.l1);
    const old = { offset: this.l1Offset, clusters: Math.ceil(this.l1.length / this.clusterSize) };
    const next = this.hooks.relocateL1(table, old);
    this.l1 = table;
    this.l1Offset = next.offset;
  }

  /**
   * L2 tables wholly beyond `entries` L1 entries are freed, as qcow2_shrink_l1_table does — and,
   * unlike QEMU 7.2 (which leaks them), the active tree's reference to each cluster they map (VM
   * state lives there: vm-state.ts). A table shared with a snapshot still counts once per tree
   * reaching it (qcow2_update_snapshot_refcount), so its clusters drop a reference too.
   */
  shrinkL1(entries: number): void {
    for (let i = entries; i < this.l1Size; i++) {
      const le = readL1(this.l1, i);
      if (le.l2Offset !== 0) {
        const table = this.cache.get(le.l2Offset);
        for (let j = 0; j < this.l2Entries; j++) {
          const e = readL2(table, j, this.clusterBits, this.extendedL2, this.dataFile);
          if ((e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) && !this.dataFile)
            this.hooks.free(e.hostOffset);
          else if (e.type === ClusterType.Compressed) {
            const last = Math.floor((e.hostOffset + e.compressedLength - 1) / this.clusterSize);
            for (let c = Math.floor(e.hostOffset / this.clusterSize); c <= last; c++)
              this.hooks.free(c * this.clusterSize);
          }
        }
        this.hooks.free(le.l2Offset);
        writeL1(this.l1, i, 0, false);
        this.l1Changed = true;
      }
    }
  }

  /** The active L1 becomes a copy of `l1` (a snapshot's), in place; its size is not changed. */
  loadL1(l1: Uint8Array): void {
    const next = new Uint8Array(this.l1.length);
    next.set(l1.subarray(0, next.length));
    this.l1 = next;
    this.l1Changed = true;
  }

  /**
   * Switch to an L1 table already on disk with the header naming it (shadow-switch.ts): nothing
   * is written, the old table's clusters are the caller's to free.
   */
  adoptL1(table: Uint8Array, offset: number): void {
    if (this.l1Changed) throw new Error('internal: L1 adopted while the active one is dirty');
    this.l1 = table;
    this.l1Offset = offset;
  }

  l1Dirty(): boolean {
    return this.l1Changed;
  }

  writeL1Table(): void {
    if (!this.l1Changed) return;
    this.dev.event?.('l1_update');
    this.dev.write(this.l1, this.l1Offset);
    this.l1Changed = false;
  }

  // ---------------------------------------------------------------- the L2 cache

  /** L2 tables are written only after `dep` (the refcounts) is written and flushed. */
  dependOn(dep: WriteBackTarget | undefined): void {
    this.cache.setDependency(dep);
  }

  tablesDirty(): boolean {
    return this.cache.isDirty();
  }

  writeBackTables(): void {
    this.cache.writeBack();
  }

  /** The cluster at `offset` was freed: a cached table there is dropped unwritten. */
  forgetTable(offset: number): void {
    this.cache.discard(offset);
  }

  // ---------------------------------------------------------------- references and COPIED

  /**
   * Every reference an L1 tree (the active one by default) holds, as cluster index → count: the
   * L2 tables, their data clusters (preallocated zero clusters included), and each host cluster a
   * compressed range touches — the walk of QEMU's qcow2_update_snapshot_refcount.
   */
  treeReferences(l1: Uint8Array = this.l1, l1Offset = this.l1Offset): Map<number, number> {
    const counts = new Map<number, number>();
    const add = (c: number): void => {
      counts.set(c, (counts.get(c) ?? 0) + 1);
    };
    const cs = this.clusterSize;
    for (let i = 0; i < l1.length / 8; i++) {
      const l2 = this.l2OffsetAt(i, l1, l1Offset);
      if (l2 === 0) continue;
      add(l2 / cs);
      const table = this.cache.get(l2);
      for (let j = 0; j < this.l2Entries; j++) {
        const e = readL2(table, j, this.clusterBits, this.extendedL2, this.dataFile);
        if (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) add(e.hostOffset / cs);
        else if (e.type === ClusterType.Compressed) {
          const last = Math.floor((e.hostOffset + e.compressedLength - 1) / cs);
          for (let c = Math.floor(e.hostOffset / cs); c <= last; c++) add(c);
        }
      }
    }
    return counts;
  }

  /**
   * COPIED (bit 63) on the active L1 and L2 entries exactly where the refcount is 1 — or where
   * `exclusive` says so (`() => false` clears them all, before refcounts rise).
   */
  updateCopiedFlags(exclusive: (hostOffset: number) => boolean = (o) => this.hooks.refcount(o) === 1): void {
    for (let i = 0; i < this.l1Size; i++) {
      const l2 = this.l2OffsetAt(i);
      if (l2 === 0) continue;
      const l2Copied = exclusive(l2);
      if (readL1(this.l1, i).copied !== l2Copied) {
        writeL1(this.l1, i, l2, l2Copied);
        this.l1Changed = true;
      }
      const table = this.cache.get(l2);
      let dirty = false;
      for (let j = 0; j < this.l2Entries; j++) {
        const e = readL2(table, j, this.clusterBits, this.extendedL2, this.dataFile);
        if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) continue;
        const want = exclusive(e.hostOffset);
        if (e.copied === want) continue;
        writeL2(table, j, this.clusterBits, this.extendedL2, {
          type: e.type,
          hostOffset: e.hostOffset,
          copied: want,
          allocBitmap: e.allocBitmap,
          zeroBitmap: e.zeroBitmap,
        });
        dirty = true;
      }
      if (dirty) this.cache.markDirty(l2);
    }
  }
}
