/**
 * The metadata writer: the one owner of the header state, of the order in which metadata reaches
 * the disk, of table relocation and of the corruption signal. It builds the layers below it
 * (refcounts, allocator, cluster map) and is the only code that writes the header.
 *
 * The flush order (`flush`), written once:
 *
 *   1. guest data (written straight through; an external data file is flushed first)
 *   2. refcount blocks, then the refcount table         — new clusters are counted before use
 *   3. L2 tables                                        — after the refcounts they rely on
 *   4. the L1 table and the header                      — after the L2 tables they point to
 *   5. deferred refcount decrements                     — after no table points at the cluster
 *      then the discards they queued (holes punched in the file: refcounts.ts `takeDiscards`)
 *
 * with a device flush between steps. The L2 cache's dependency on the refcount layer enforces
 * 2 → 3 even when an eviction writes an L2 table early, and its dependency on a flush 1 → 3 (an
 * entry mapping data written since the last flush: cluster-map.ts setEntry), lazy refcounts or not. A crash at any point leaves at worst
 * leaked clusters.
 *
 * While the dirty bit is set (lazy refcounts, lazy-refcounts.ts), steps 2 and 5 leave the refcount
 * blocks in the cache and 2 → 3 does not hold: a crash may then leave data clusters uncounted, which
 * the dirty bit tells the next read-write open to repair.
 *
 * Relocation (`relocate`, used by the L1 table, the snapshot table and — through the allocator's
 * hook, `switchTable` — the refcount table): write the new table, flush, switch the header to it
 * (flushed), then free the old table with a deferred decrement.
 *
 * Changes no write order can make crash-safe (`beginUnorderedChange`): QCOW_OFLAG_COPIED (bit 63 of L1/L2
 * entries) must be set exactly when the refcount is 1, and snapshot create/apply/delete change
 * both, in different clusters — `qemu-img check` counts a mismatch in either direction as a
 * corruption. On v3 such a change is bracketed by the dirty bit (incompatible bit 0: "refcounts
 * may be inconsistent, a check is required"): set and flushed before, cleared after the last
 * flush; a crash between leaves a dirty image that the next read-write open repairs, as QEMU's
 * open and ours do. v2 has no feature bits: there, the change goes to shadow copies made visible
 * by one header-sector write (shadow-switch.ts).
 */
import type { CorruptionError } from '../errors.ts';
import * as C from '../format/constants.ts';
import { alignUp } from '../format/bytes.ts';
import { cryptoHeaderPointer, encodeHeader, type Header } from '../format/header.ts';
import { metadataRegions, regionAt, type Region } from '../format/regions.ts';
import type { BlockDevice } from '../io/device.ts';
import { Allocator } from './allocator.ts';
import { ClusterMap } from './cluster-map.ts';
import { LazyRefcounts } from './lazy-refcounts.ts';
import { Refcounts } from './refcounts.ts';

/** Metadata cache budget (bytes per cache) when the caller gives none (QEMU's defaults differ). */
export const DEFAULT_L2_CACHE_BYTES = 4 * 1024 * 1024;
export const DEFAULT_REFCOUNT_CACHE_BYTES = 1024 * 1024;

export interface CacheBudget {
  /** Cached L2 tables and refcount blocks (counts of tables, not bytes). */
  l2Tables: number;
  refcountBlocks: number;
}

/** The default budget: a fixed number of bytes per cache, at least 16 tables each. */
export function defaultCacheBudget(clusterSize: number): CacheBudget {
  return {
    l2Tables: Math.max(16, Math.floor(DEFAULT_L2_CACHE_BYTES / clusterSize)),
    refcountBlocks: Math.max(16, Math.floor(DEFAULT_REFCOUNT_CACHE_BYTES / clusterSize)),
  };
}

/** A table's place on disk: host offset and size in clusters. */
export interface TablePlace {
  offset: number;
  clusters: number;
}

export class MetadataWriter {
  readonly header: Header;
  readonly rc: Refcounts;
  readonly alloc: Allocator;
  readonly map: ClusterMap;
  /** Lazy refcounts and the deferral of refcount writes under the dirty bit (lazy-refcounts.ts). */
  readonly lazy: LazyRefcounts;
  private readonly cs: number;
  private headerDirty = false;
  /** Lazy refcounts: the dirty bit is set on disk (cleared by a clean close). */
  private lazyDirty = false;
  /** Set (with the reason) once corruption was detected on a writable image: writes stop. */
  private corruptReason: string | undefined;
  /** Encoded size of the snapshot table on disk (the header does not record it). */
  snapshotTableBytes = 0;

  constructor(
    private readonly device: BlockDevice,
    /** Where guest data lives: the image itself or its external data file. */
    private readonly data: BlockDevice,
    header: Header,
    private readonly writable: () => boolean,
    budget: CacheBudget,
  ) {
    this.header = header;
    const h = header;
    this.cs = 2 ** h.clusterBits;
    this.rc = new Refcounts(device, {
      clusterBits: h.clusterBits,
      order: h.refcountOrder,
      tableOffset: h.refcountTableOffset,
      tableClusters: h.refcountTableClusters,
      cacheBlocks: budget.refcountBlocks,
    });
    this.alloc = new Allocator(device, this.rc, {
      switchRefTable: (next) =>
        this.switchTable((hd) => {
          hd.refcountTableOffset = next.offset;
          hd.refcountTableClusters = next.clusters;
        }, undefined),
      metadataAt: (c) => this.metadataAt(c),
      settleFrees: () => this.settleFrees(),
    });
    this.lazy = new LazyRefcounts(header, device, this.rc);
    this.map = new ClusterMap(
      device,
      {
        // (the map allocates only L2 tables: their refcounts go to disk at once, lazy-refcounts.ts)
        alloc: (n) => {
          const off = this.alloc.alloc(n);
          this.lazy.afterMetadataAlloc();
          return off;
        },
        free: (off) => this.rc.decrement(off / this.cs, 1),
        refcount: (off) => this.rc.get(off / this.cs),
        relocateL1: (table, old) =>
          this.relocate(table, old, (hd, next) => {
            hd.l1TableOffset = next.offset;
            hd.l1Size = table.length / 8;
          }),
      },
      {
        clusterBits: h.clusterBits,
        extendedL2: (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n,
        dataFile: (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n,
        l1Offset: h.l1TableOffset,
        l1Size: h.l1Size,
        cacheTables: budget.l2Tables,
      },
    );
    // Declared write order: L2 tables are written only after the refcounts they rely on (step 2 → 3),
    // unless the dirty bit says refcounts may lag (lazy refcounts).
    this.map.dependOn(this.lazy.dependency());
  }

  // ---------------------------------------------------------------- header state

  /** The header changed in memory; it goes to disk with the next flush (step 4). */
  markHeaderDirty(): void {
    this.headerDirty = true;
  }

  /** Write the header now (cluster 0; at least 4 KiB as QEMU does, never past the cluster). */
  writeHeader(): void {
    const buf = new Uint8Array(Math.min(this.cs, Math.max(4096, this.cs)));
    buf.set(encodeHeader(this.header));
    this.device.write(buf, 0);
    this.headerDirty = false;
  }

  /** Change header fields and make the change durable before anything else happens. */
  updateHeaderNow(change: (h: Header) => void): void {
    change(this.header);
    this.writeHeader();
    this.device.flush();
  }

  /**
   * Before the first change of a session: lazy refcounts (compatible bit 0) set the dirty bit
   * (incompatible bit 0) on disk, so that refcount updates may lag behind the tables until a clean
   * close; a crash leaves a dirty image that the next read-write open repairs.
   */
  beforeFirstChange(): void {
    if (this.lazyDirty || !this.lazy.enabled) return;
    this.lazyDirty = true;
    this.updateHeaderNow((h) => {
      h.incompatibleFeatures |= C.INCOMPAT_DIRTY;
    });
  }

  /** QEMU's rule for a read-write open: unknown autoclear bits are cleared. */
  clearUnknownAutoclear(): void {
    const keep = this.header.autoclearFeatures & C.AUTOCLEAR_MASK;
    if (keep !== this.header.autoclearFeatures)
      this.updateHeaderNow((h) => {
        h.autoclearFeatures = keep;
      });
  }

  /**
   * Begin a change with no crash-safe write order (refcounts and COPIED flags, see the module
   * comment): on v3, everything before is flushed, then the dirty bit (incompatible bit 0) is set
   * and flushed. Returns whether it was set here; pass that to `endUnorderedChange`. An image
   * already dirty (lazy refcounts) stays so; v2 images have no dirty bit. A change that fails
   * before its end leaves the bit set, and the next read-write open repairs the image.
   */
  beginUnorderedChange(): boolean {
    const alreadyDirty = (this.header.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n;
    if (this.header.version < 3 || alreadyDirty || !this.writable() || this.corruptReason) return false;
    this.flush();
    this.updateHeaderNow((h) => {
      h.incompatibleFeatures |= C.INCOMPAT_DIRTY;
    });
    return true;
  }

  /** End it: everything flushed, then the dirty bit cleared (and flushed) if `begun` set it. */
  endUnorderedChange(begun: boolean): void {
    this.flush();
    if (!begun || this.corruptReason || !this.writable()) return;
    this.lazy.writeRefcounts();
    this.updateHeaderNow((h) => {
      h.incompatibleFeatures &= ~C.INCOMPAT_DIRTY;
    });
  }

  // ---------------------------------------------------------------- flush order

  /** Steps 1–4 of the flush order (data file, refcounts, L2, L1 and header). */
  flushTables(): void {
    if (this.data !== this.device) {
      this.data.flush(); // step 1
      this.map.dataFlushed();
    }
    // Under the dirty bit refcounts may lag: they stay in the cache (lazy-refcounts.ts).
    if (this.rc.isDirty() && !this.lazy.deferring) {
      this.rc.writeBack(); // step 2
      this.device.flush();
      this.map.dataFlushed();
    }
    // (else step 3's cache flushes first if an L2 entry maps data written since the last flush)
    if (this.map.tablesDirty()) {
      this.map.writeBackTables(); // step 3
      this.device.flush();
    }
    if (this.map.l1Dirty() || this.headerDirty) {
      this.map.writeL1Table(); // step 4
      if (this.headerDirty) this.writeHeader();
      this.device.flush();
    }
  }

  /** The whole flush order; a closed, read-only or corrupt image writes nothing. */
  flush(): void {
    if (!this.writable() || this.corruptReason) return;
    this.alloc.endRun(); // a failed request's unused run goes back before anything is written
    this.settleFrees();
  }

  /** Flush steps 1–5 without ending a data request's run (the allocator reuses freed clusters). */
  settleFrees(): void {
    if (!this.writable() || this.corruptReason) return;
    this.flushTables();
    // Step 5: nothing on disk points at these clusters any more.
    if (this.rc.hasPendingDecrements()) {
      for (const c of this.rc.applyDecrements()) {
        this.map.forgetTable(c * this.cs);
        this.alloc.freed(c);
      }
      if (!this.lazy.deferring) {
        this.rc.writeBack();
        this.device.flush();
      }
    }
    // qcow2_process_discards, after the refcount update: the freed clusters whose type the
    // image passes down become holes (an external data file's clusters have no refcounts).
    for (const [off, bytes] of this.rc.takeDiscards()) this.device.discard?.(off, bytes);
    this.device.flush();
  }

  /** Lazy refcounts: after a full flush the refcounts are exact, so the dirty bit can go. */
  markClean(): void {
    if (!this.lazyDirty || this.corruptReason || !this.writable()) return;
    this.flush();
    this.lazy.writeRefcounts();
    this.updateHeaderNow((h) => {
      h.incompatibleFeatures &= ~C.INCOMPAT_DIRTY;
    });
    this.lazyDirty = false;
  }

  // ---------------------------------------------------------------- relocation

  /**
   * Crash-safe table replacement: (1) the new table in fresh clusters, (2) everything it and the
   * allocation rely on flushed (steps 1–4), (3) the header switched to it and flushed, (4) the old
   * table freed (a deferred decrement, step 5 of the next flush). An empty table takes no clusters.
   */
  relocate(
    table: Uint8Array,
    old: TablePlace | undefined,
    point: (h: Header, next: TablePlace) => void,
  ): TablePlace {
    const next: TablePlace = { offset: 0, clusters: 0 };
    if (table.length > 0) {
      const size = alignUp(table.length, this.cs);
      next.clusters = size / this.cs;
      next.offset = this.alloc.alloc(next.clusters);
      // Only the table's own bytes are written, as QEMU writes an L1 or snapshot table
      // (qcow2_grow_l1_table, qcow2_write_snapshots): a table at the end of the file leaves the file
      // ending where the table ends, and bytes past a table's length are never read.
      this.device.write(table, next.offset);
      this.lazy.afterMetadataAlloc();
    }
    this.flushTables();
    this.device.flush();
    this.switchTable((h) => point(h, next), old);
    return next;
  }

  /** Steps (3) and (4) of a relocation whose new table is already on disk and flushed. */
  switchTable(point: (h: Header) => void, old: TablePlace | undefined): void {
    this.updateHeaderNow(point);
    if (old && old.offset !== 0)
      for (let c = 0; c < old.clusters; c++) this.rc.free(old.offset / this.cs + c, 1); // qcow2_free_clusters
  }

  // ---------------------------------------------------------------- corruption

  /** Which fixed metadata structure occupies a host cluster (the allocator's overlap check). */
  metadataAt(cluster: number): string | undefined {
    const r = regionAt(this.fixedRegions(), cluster * this.cs, 1, this.cs);
    return r?.kind === 'qcow2_header' ? 'header' : r?.kind;
  }

  /** The fixed metadata regions, rebuilt only when a place they depend on moved (every allocation asks). */
  private fixedRegions(): Region[] {
    const h = this.header;
    const rt = this.rc.tablePlace();
    const l1 = this.map.l1Place();
    const crypto = cryptoHeaderPointer(h);
    const k = this.regionsKey;
    const same =
      k.length > 0 &&
      k[0] === h.clusterBits &&
      k[1] === rt.offset &&
      k[2] === rt.bytes &&
      k[3] === l1.offset &&
      k[4] === l1.bytes &&
      k[5] === h.nbSnapshots &&
      k[6] === h.snapshotsOffset &&
      k[7] === this.snapshotTableBytes &&
      k[8] === (crypto?.offset ?? -1) &&
      k[9] === (crypto?.length ?? -1);
    if (same) return this.regions;
    this.regionsKey = [
      h.clusterBits,
      rt.offset,
      rt.bytes,
      l1.offset,
      l1.bytes,
      h.nbSnapshots,
      h.snapshotsOffset,
      this.snapshotTableBytes,
      crypto?.offset ?? -1,
      crypto?.length ?? -1,
    ];
    this.regions = metadataRegions(h, {
      refcountTable: rt,
      l1Table: l1,
      snapshotTableBytes: this.snapshotTableBytes,
      cryptoHeader: true,
    });
    return this.regions;
  }

  private regionsKey: number[] = [];
  private regions: Region[] = [];

  get corrupt(): string | undefined {
    return this.corruptReason;
  }

  /**
   * QEMU's qcow2_signal_corruption: on a writable image, corrupt metadata found by any operation
   * sets the corrupt bit (incompatible bit 1) in the header and stops all further writes, so the
   * damage cannot spread. Only the header is written; cached tables are dropped unwritten.
   */
  signalCorruption(e: CorruptionError): void {
    if (!this.writable() || this.corruptReason) return;
    this.corruptReason = e.message;
    try {
      this.updateHeaderNow((h) => {
        h.incompatibleFeatures |= C.INCOMPAT_CORRUPT;
      });
    } catch {
      // the corruption report matters more than a failed header write
    }
  }
}
