/**
 * Guest → host cluster mapping: the active L1 table (held in memory) and L2 tables (through a
 * cache). It finds, creates and copies-on-write L2 tables, and reads and writes L2 entries. It
 * never touches refcounts: allocation, freeing and refcount queries are the image's callbacks.
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
import { TableCache } from './cache.ts';

export interface MapHooks {
  alloc(n: number): number;
  free(offset: number): void;
  refcount(offset: number): number;
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
  readonly cache: TableCache;
  l1: Uint8Array;
  l1Offset: number;
  l1Dirty = false;

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

  /** The L2 entry for a guest cluster (unallocated when no L2 table maps it). */
  lookup(guestCluster: number): L2Entry {
    return this.lookupIn(this.l1, this.l1Offset, guestCluster);
  }

  /** The same through another L1 table (a snapshot's). */
  lookupIn(l1: Uint8Array, l1Offset: number, guestCluster: number): L2Entry {
    const [i1, i2] = this.split(guestCluster);
    const l2 = this.l2OffsetAt(i1, l1, l1Offset);
    if (l2 === 0) return UNALLOCATED;
    return readL2(this.cache.get(l2), i2, this.clusterBits, this.extendedL2, this.dataFile);
  }

  /**
   * An L2 slot that may be modified for the active L1: allocates a table if none, copies a shared
   * table (refcount > 1) first. The slot's table is valid until the next cache operation.
   */
  slotForWrite(guestCluster: number): L2Slot {
    const [i1, i2] = this.split(guestCluster);
    if (i1 >= this.l1Size) throw new Error(`internal: L1 index ${i1} beyond L1 size ${this.l1Size}`);
    const old = this.l2OffsetAt(i1);
    const e = readL1(this.l1, i1);
    if (old !== 0 && e.copied) return { l2Offset: old, table: this.cache.get(old), index: i2 };
    if (old !== 0 && this.hooks.refcount(old) === 1) {
      // Refcount says exclusive; the COPIED flag was stale (e.g. after a snapshot was deleted).
      writeL1(this.l1, i1, old, true);
      this.l1Dirty = true;
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
    this.l1Dirty = true;
    return { l2Offset: fresh, table, index: i2 };
  }

  setEntry(slot: L2Slot, e: L2Write): void {
    // The slot's table may have been evicted by an allocation in between: fetch it again.
    const table = this.cache.get(slot.l2Offset);
    writeL2(table, slot.index, this.clusterBits, this.extendedL2, e);
    this.cache.markDirty(slot.l2Offset);
  }

  /** Replace the L1 table (growth/shrink is done by the image, which owns the header). */
  replaceL1(l1: Uint8Array, offset: number): void {
    this.l1 = l1;
    this.l1Offset = offset;
  }

  /** Every L2 table offset referenced by the active L1. */
  l2Tables(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.l1Size; i++) {
      const off = this.l2OffsetAt(i);
      if (off) out.push(off);
    }
    return out;
  }

  writeL1Table(): void {
    if (!this.l1Dirty) return;
    this.dev.write(this.l1, this.l1Offset);
    this.l1Dirty = false;
  }
}
