/**
 * Cluster allocation over the refcount layer: find free clusters, give them refcount 1, and create
 * the refcount blocks (and a larger refcount table) that this needs; and byte-level allocation for
 * compressed clusters (`allocBytes`, packing ranges into the last partly used cluster). The refcount
 * layer itself never allocates; this is the only place that decides where metadata for refcounts
 * goes. Every allocation passes the overlap guard (the metadata writer's region list).
 *
 * New refcount blocks are self-describing: block `b` is placed at the first cluster it covers
 * (cluster b * entriesPerBlock, free because no block covered it), and counts itself.
 * A table that is full is relocated (qcow2.txt: the refcount table is contiguous): new table and
 * the blocks covering it go past the end of the image, are written and flushed, then the header
 * is switched, then the old table is freed (the switch and the free are the metadata writer's,
 * through the `switchRefTable` hook).
 */
import type { BlockDevice } from '../io/device.ts';
import { setRefcount, writeRefTable } from '../format/tables.ts';
import { QCOW_MAX_REFTABLE_SIZE } from '../format/constants.ts';
import { CorruptionError, Qcow2Error } from '../errors.ts';
import type { Refcounts } from './refcounts.ts';

export interface AllocatorHooks {
  /**
   * The new refcount table is on disk and flushed: switch the header to it (flushed) and free the
   * old one (the metadata writer's relocation steps 3 and 4).
   */
  switchRefTable(next: { offset: number; clusters: number }, old: { offset: number; clusters: number }): void;
  /** Name of the metadata structure occupying `cluster`, if any (QEMU's overlap check). */
  metadataAt(cluster: number): string | undefined;
}

export class Allocator {
  /** No cluster below this index is free (a search starts here). */
  private hint = 0;
  /** One past the highest cluster allocated in this session (metadata may not be written yet). */
  private top = 0;
  /** Byte allocation for compressed clusters: the next free byte of the last partly used cluster. */
  private packCursor = 0;

  constructor(
    private readonly dev: BlockDevice,
    private readonly rc: Refcounts,
    private readonly hooks: AllocatorHooks,
  ) {}

  private get cs(): number {
    return this.rc.clusterSize;
  }

  /** First cluster index past everything in use. */
  endCluster(): number {
    return Math.max(this.top, Math.ceil(this.dev.size() / this.cs));
  }

  /** A cluster became free: searches may start there again, and byte packing may not use it. */
  freed(cluster: number): void {
    if (cluster < this.hint) this.hint = cluster;
    if (this.packCursor !== 0 && Math.floor(this.packCursor / this.cs) === cluster) this.packCursor = 0;
  }

  /**
   * Byte-granular allocation for compressed data (qcow2_alloc_bytes), packing into the last partly
   * used cluster; every compressed range holds one reference to each cluster it touches.
   */
  allocBytes(n: number): number {
    this.dev.event?.('cluster_alloc_bytes');
    const cs = this.cs;
    const cur = this.packCursor;
    const curCluster = Math.floor(cur / cs);
    if (
      cur !== 0 &&
      cur % cs !== 0 &&
      (cur % cs) + n <= cs &&
      this.rc.get(curCluster) > 0 &&
      !this.rc.wouldOverflow(curCluster, 1)
    ) {
      // Share the current host cluster: one more reference for this compressed range.
      this.rc.increment(curCluster, 1);
      this.packCursor = cur + n;
      return cur;
    }
    const host = this.alloc(Math.ceil(n / cs));
    this.packCursor = host + n;
    return host;
  }

  /** Start byte packing afresh (the tree changed under it: a snapshot applied or deleted). */
  resetBytes(): void {
    this.packCursor = 0;
  }

  /** Allocate `n` contiguous clusters with refcount 1; returns the host offset of the first. */
  alloc(n = 1): number {
    this.dev.event?.('cluster_alloc'); // qcow2_alloc_clusters
    // A run as long as a refcount block's range always contains the first cluster of some range,
    // where a new self-describing block would go: large runs go past the end of the image, with
    // their blocks after them.
    if (n >= this.rc.entriesPerBlock / 2) return this.allocAtEnd(n);
    for (;;) {
      const start = this.findFreeRun(n);
      if (this.ensureBlocks(start, n)) continue; // a new block landed inside the run: search again
      for (let c = start; c < start + n; c++) {
        // A free cluster holding live metadata means the refcounts are wrong: writing there would
        // destroy the structure (QEMU's qcow2_pre_write_overlap_check).
        const what = this.hooks.metadataAt(c);
        if (what) {
          throw new CorruptionError(
            'REFCOUNT_OVERLAP',
            `Refcount of cluster ${c} is 0 but it holds the ${what}`,
            c * this.cs,
            { cluster: c, structure: what },
          );
        }
      }
      for (let c = start; c < start + n; c++) this.rc.increment(c, 1);
      if (start === this.hint) this.hint = start + n;
      this.top = Math.max(this.top, start + n);
      return start * this.cs;
    }
  }

  /**
   * `n` clusters past the end of the image, followed by the refcount blocks that cover the area and
   * did not exist yet (each counts the area's clusters in its range, itself included).
   */
  private allocAtEnd(n: number): number {
    const E = this.rc.entriesPerBlock;
    for (;;) {
      const start = this.endCluster();
      const newBlocks = this.blocksToAppend(start, n);
      const maxIndex = newBlocks.length ? Math.max(...newBlocks) : -1;
      if (maxIndex >= this.rc.tableEntries) {
        this.growTable(maxIndex + 1);
        continue; // the table moved past the old end: start again from the new end
      }
      const areaEnd = start + n + newBlocks.length;
      for (let c = start; c < areaEnd; c++) {
        const what = this.hooks.metadataAt(c);
        if (what || !this.rc.isFree(c)) {
          throw new CorruptionError(
            'REFCOUNT_OVERLAP',
            `Cluster ${c} past the end of the image is in use (${what ?? 'refcount > 0'})`,
            c * this.cs,
            { cluster: c },
          );
        }
      }
      const blocks = new Map<number, Uint8Array>();
      newBlocks.forEach((b, k) => {
        const block = new Uint8Array(this.cs);
        blocks.set(b, block);
        this.rc.installBlock(b, (start + n + k) * this.cs, block);
      });
      for (let c = start; c < areaEnd; c++) {
        const fresh = blocks.get(Math.floor(c / E));
        if (fresh) setRefcount(fresh, c % E, this.rc.order, 1);
        else this.rc.increment(c, 1);
      }
      this.top = Math.max(this.top, areaEnd);
      return start * this.cs;
    }
  }

  private findFreeRun(n: number): number {
    let start = this.hint;
    let len = 0;
    for (let c = this.hint; ; c++) {
      if (this.rc.isFree(c)) {
        if (len === 0) start = c;
        if (++len === n) return start;
      } else {
        len = 0;
        if (c === this.hint) this.hint = c + 1;
      }
    }
  }

  /**
   * Make sure refcount blocks exist for clusters [start, start + n). Returns true when a block (or a
   * relocated table) was placed inside that range, so the caller must search again.
   */
  private ensureBlocks(start: number, n: number): boolean {
    const E = this.rc.entriesPerBlock;
    const first = Math.floor(start / E);
    const last = Math.floor((start + n - 1) / E);
    let collided = false;
    for (let b = first; b <= last; b++) {
      if (b >= this.rc.tableEntries) {
        this.growTable(b + 1);
        return true;
      }
      if (this.rc.blockFor(b * E) !== 0) continue;
      const at = b * E; // free: no block covered it
      const block = new Uint8Array(this.cs);
      setRefcount(block, 0, this.rc.order, 1); // the block counts itself
      this.rc.installBlock(b, at * this.cs, block);
      this.top = Math.max(this.top, at + 1);
      if (at >= start && at < start + n) collided = true;
    }
    return collided;
  }

  /**
   * The refcount blocks (by table index) missing for an area of `n` clusters at `start` followed by
   * those blocks themselves: the fixed point of "m new blocks need covering too".
   */
  private blocksToAppend(start: number, n: number): number[] {
    const E = this.rc.entriesPerBlock;
    for (let m = 0; ;) {
      const need: number[] = [];
      for (let b = Math.floor(start / E); b <= Math.floor((start + n + m - 1) / E); b++) {
        if (b >= this.rc.tableEntries || this.rc.blockFor(b * E) === 0) need.push(b);
      }
      if (need.length === m) return need;
      m = need.length;
    }
  }

  /** Relocate the refcount table to hold at least `minEntries` entries. */
  private growTable(minEntries: number): void {
    const cs = this.cs;
    const E = this.rc.entriesPerBlock;
    const oldEntries = this.rc.tableEntries;
    let entries = Math.max(minEntries, oldEntries * 2);
    let start: number;
    let tc: number; // table clusters
    let newBlocks: number[]; // block indices to create, placed after the table
    for (;;) {
      tc = Math.ceil((entries * 8) / cs);
      if (tc * cs > QCOW_MAX_REFTABLE_SIZE) {
        throw new Qcow2Error('REFTABLE_LIMIT', 'The refcount table would exceed its 8 MiB limit', {
          entries,
        });
      }
      start = this.endCluster();
      newBlocks = this.blocksToAppend(start, tc);
      const maxIndex = Math.max(minEntries - 1, ...newBlocks);
      if (maxIndex < entries) break;
      entries = maxIndex + 1;
    }
    const m = newBlocks.length;
    const areaEnd = start + tc + m;
    // Blocks that already exist must count the area's clusters too (the area is past the end of
    // the image, so they are free).
    for (let c = start; c < areaEnd; c++) {
      const b = Math.floor(c / E);
      if (!newBlocks.includes(b)) this.rc.increment(c, 1);
    }
    // Everything the new table points at must be on disk before it is.
    this.rc.writeBack();
    const table = new Uint8Array(tc * cs);
    this.rc.copyTableInto(table);
    newBlocks.forEach((b, k) => {
      const blockCluster = start + tc + k;
      const block = new Uint8Array(cs);
      for (let c = Math.max(start, b * E); c < Math.min(areaEnd, (b + 1) * E); c++)
        setRefcount(block, c - b * E, this.rc.order, 1);
      this.dev.write(block, blockCluster * cs);
      writeRefTable(table, b, blockCluster * cs);
    });
    this.dev.write(table, start * cs);
    this.dev.flush();
    const old = this.rc.tablePlace();
    this.rc.replaceTable(table, start * cs);
    this.top = Math.max(this.top, areaEnd);
    this.hooks.switchRefTable(
      { offset: start * cs, clusters: tc },
      { offset: old.offset, clusters: old.bytes / cs },
    );
  }
}
