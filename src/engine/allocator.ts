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
import { readRefTable, setRefcount, writeRefTable } from '../format/tables.ts';
import { QCOW_MAX_REFTABLE_SIZE } from '../format/constants.ts';
import { CorruptionError, Qcow2Error } from '../errors.ts';
import type { Refcounts } from './refcounts.ts';

export interface AllocatorHooks {
  /**
   * The new refcount table is on disk and flushed: switch the header to it (flushed; the metadata
   * writer's relocation step 3). The allocator frees the old table itself.
   */
  switchRefTable(next: { offset: number; clusters: number }): void;
  /** Name of the metadata structure occupying `cluster`, if any (QEMU's overlap check). */
  metadataAt(cluster: number): string | undefined;
  /**
   * Flush steps 1–5: the tables that dropped references reach the disk, then the deferred
   * decrements are applied — so a freed cluster can be reused and overwritten safely.
   */
  settleFrees?(): void;
}

export class Allocator {
  /** QEMU's free_cluster_index: a search starts here; a free moves it back. */
  private hint = 0;
  /** One past the highest cluster allocated in this session (metadata may not be written yet). */
  private top = 0;
  /** Byte allocation for compressed clusters: the next free byte of the last partly used cluster. */
  private packCursor = 0;
  /** A data request's run (planRun): how many clusters the next alloc(1) takes together. */
  private planned = 0;
  /** Clusters of the current run not handed out yet (refcount 1, referenced by nothing). */
  private reserved: number[] = [];
  /** Where the request's last run ended on the host (-1: none); the next run tries to go on there. */
  private runEnd = -1;

  constructor(
    private readonly dev: BlockDevice,
    private readonly rc: Refcounts,
    private readonly hooks: AllocatorHooks,
  ) {
    // QEMU's update_refcount: a refcount dropping to 0 moves the search cursor back to it
    rc.onZero = (c) => this.freed(c);
  }

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

  /**
   * A data request is about to take `n` clusters one by one (the data path, per L2 table): the
   * first `allocInRun` takes all of them as one run, as QEMU allocates a request's clusters together
   * (handle_alloc), so the refcount blocks they need land after the run, not inside it.
   */
  planRun(n: number): void {
    this.releaseReserved();
    this.planned = n;
    // a cluster written in place breaks the request's host run (QEMU starts a new one after it)
    if (n === 0) this.runEnd = -1;
  }

  /** The request is over: clusters of its run that were not used go back at once (never referenced). */
  endRun(): void {
    this.releaseReserved();
    this.planned = 0;
    this.runEnd = -1;
  }

  private releaseReserved(): void {
    for (const c of this.reserved) {
      this.rc.undoAlloc(c);
      this.freed(c);
    }
    this.reserved = [];
  }

  /** Is a planned run still handing out clusters? */
  inRun(): boolean {
    return this.planned > 0 || this.reserved.length > 0;
  }

  /** One cluster for guest data: the next of the planned run (planRun), else a cluster of its own. */
  allocInRun(): number {
    if (this.reserved.length > 0) return this.reserved.shift()! * this.cs;
    const k = Math.max(1, this.planned);
    this.planned = 0;
    let first = -1;
    let m = 0;
    if (this.runEnd >= 0) {
      // QEMU (handle_alloc after a run in the same request): qcow2_alloc_clusters_at takes as
      // many clusters as are free right after the last run; the rest get a run of their own.
      m = this.allocAt(this.runEnd, k);
      if (m > 0) {
        first = this.runEnd;
        this.planned = k - m;
      }
    }
    if (first < 0) {
      m = k;
      first = this.allocReusing(k) / this.cs;
    }
    for (let c = first + 1; c < first + m; c++) this.reserved.push(c);
    this.runEnd = first + m;
    return first * this.cs;
  }

  /** QEMU's qcow2_alloc_clusters_at: of `n` clusters from `at`, the free ones in a row, allocated. */
  private allocAt(at: number, n: number): number {
    for (;;) {
      let i = 0;
      while (i < n && this.rc.isFree(at + i)) i++;
      if (i === 0) return 0;
      if (this.raiseNew(at, i)) return i;
    }
  }

  /**
   * Clusters for guest data, reusing clusters freed since the last flush as QEMU does at once
   * (its frees take effect immediately). Here a freed cluster becomes reusable only after the
   * flush steps that put the tables no longer pointing at it on disk (`settleFrees`): the data
   * written into it can never be reached through a stale on-disk mapping.
   */
  private allocReusing(n: number): number {
    if (!this.hooks.settleFrees) return this.alloc(n);
    this.dev.event?.('cluster_alloc');
    for (;;) {
      const start = this.scanFree(n, true);
      let pending = false;
      for (let c = start; c < start + n && !pending; c++) pending = !this.rc.isFree(c);
      if (pending) {
        this.hooks.settleFrees();
        let settled = true;
        for (let c = start; c < start + n && settled; c++) settled = this.rc.isFree(c);
        if (!settled) return this.alloc(n); // nothing could be flushed (read-only, corrupt)
      }
      if (this.raiseNew(start, n)) return start * this.cs;
    }
  }

  /** Allocate `n` contiguous clusters with refcount 1; returns the host offset of the first. */
  alloc(n = 1): number {
    this.dev.event?.('cluster_alloc'); // qcow2_alloc_clusters
    for (;;) {
      const start = this.scanFree(n);
      if (this.raiseNew(start, n)) return start * this.cs;
      // A refcount block (or a larger table) was placed: search again (QEMU's -EAGAIN).
    }
  }

  /**
   * QEMU's alloc_clusters_noref: from the cursor, the first `n` clusters in a row whose refcount
   * is 0 (a cluster no refcount block covers counts as 0). The cursor moves past them, and past
   * every cluster looked at; only a free moves it back.
   */
  private scanFree(n: number, reuse = false): number {
    for (let i = 0; i < n;) {
      const c = this.hint++;
      if (this.rc.isFree(c) || (reuse && this.rc.freeAfterFlush(c))) i++;
      else i = 0;
    }
    return this.hint - n;
  }

  private blockMissing(cluster: number): boolean {
    return this.rc.blockFor(cluster) === 0;
  }

  /**
   * One reference more on each of the clusters [start, start + n), which were free (QEMU's
   * update_refcount with addend 1). When a cluster has no refcount block yet, one is made first
   * (`allocBlock`) and false is returned: the caller searches again, from `start` (QEMU 7.2
   * undoes the increments up to that cluster and moves the cursor back to `start`: "try the same
   * ones first to see if they're still free"). Nothing is incremented here before every block
   * exists, to the same effect.
   */
  private raiseNew(start: number, n: number): boolean {
    const E = this.rc.entriesPerBlock;
    for (let c = start; c < start + n; c = (Math.floor(c / E) + 1) * E) {
      if (!this.blockMissing(c)) continue;
      this.allocBlock(c);
      if (this.hint > start) this.hint = start;
      return false;
    }
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
    this.top = Math.max(this.top, start + n);
    return true;
  }

  /**
   * A refcount block for `cluster` (QEMU's alloc_refcount_block): it takes the next free cluster
   * from the cursor. When that cluster lies in the range the block covers, the block counts itself;
   * otherwise its own refcount goes into the block of its own range first (which may have to be
   * made, then this attempt ends and the caller searches again). A block whose table index is past
   * the end of the refcount table comes with a larger table (`refcountArea`).
   */
  private allocBlock(cluster: number): void {
    const E = this.rc.entriesPerBlock;
    const index = Math.floor(cluster / E);
    const nb = this.scanFree(1);
    if (nb === 0)
      throw new CorruptionError('REFCOUNT_OVERLAP', 'Refusing a refcount block at offset 0', 0, {});
    const block = new Uint8Array(this.cs);
    if (Math.floor(nb / E) === index) {
      setRefcount(block, nb % E, this.rc.order, 1); // self-describing
    } else if (!this.raiseNew(nb, 1)) {
      return; // nb's own range needed a block first: the cursor moved past nb; search again
    }
    const what = this.hooks.metadataAt(nb);
    if (what) {
      throw new CorruptionError(
        'REFCOUNT_OVERLAP',
        `Refcount of cluster ${nb} is 0 but it holds the ${what}`,
        nb * this.cs,
        {
          cluster: nb,
          structure: what,
        },
      );
    }
    this.top = Math.max(this.top, nb + 1);
    if (index < this.rc.tableEntries) {
      this.rc.installBlock(index, nb * this.cs, block);
      return;
    }
    // The table is full. QEMU: blocks_used covers the cluster and the new block; the new table and
    // the blocks covering it start at the first cluster past the ranges those blocks cover.
    this.rc.cacheBlock(nb * this.cs, block);
    const blocksUsed = Math.ceil(Math.max(cluster + 1, nb + 1) / E);
    this.refcountArea(blocksUsed * E, index, nb * this.cs);
  }

  /**
   * QEMU's qcow2_refcount_area (not exact size): a new refcount table with half as many entries
   * again as the image needs, and the refcount blocks missing for it, at `startCluster` (past
   * everything in use): the new blocks first, then the table; each new structure counted 1. Then
   * the header is switched to the table (written and flushed first: qcow2.txt, the refcount
   * table is contiguous and must be complete before the header points at it), and the old table
   * is freed at once — nothing on disk refers to it after the flushed switch.
   */
  private refcountArea(startCluster: number, newIndex: number, newOffset: number): void {
    const cs = this.cs;
    const E = this.rc.entriesPerBlock;
    const total = refcountBlocksFor(startCluster, cs, E, true);
    const areaIndex = Math.floor(startCluster / E);
    let tableSize = total + Math.ceil(total / 2);
    tableSize = Math.ceil(tableSize / (cs / 8)) * (cs / 8);
    const tableClusters = (tableSize * 8) / cs;
    if (tableSize * 8 > QCOW_MAX_REFTABLE_SIZE) {
      throw new Qcow2Error('REFTABLE_LIMIT', 'The refcount table would exceed its 8 MiB limit', {
        entries: tableSize,
      });
    }
    const table = new Uint8Array(tableSize * 8);
    this.rc.copyTableInto(table);
    writeRefTable(table, newIndex, newOffset);
    let missing = 0;
    for (let i = areaIndex; i < total; i++) if (readRefTable(table, i) === 0) missing++;
    const tableCluster = startCluster + missing;
    const end = tableCluster + tableClusters;
    // Everything the new table points at must be on disk before it is.
    this.rc.writeBack();
    let next = startCluster;
    for (let i = areaIndex; i < total; i++) {
      const first = Math.max(i * E, startCluster);
      const last = Math.min((i + 1) * E, end);
      const existing = readRefTable(table, i);
      if (existing !== 0 && i < this.rc.tableEntries) {
        for (let c = first; c < last; c++) this.rc.increment(c, 1);
        continue;
      }
      const block = new Uint8Array(cs);
      for (let c = first; c < last; c++) setRefcount(block, c - i * E, this.rc.order, 1);
      this.dev.write(block, next * cs);
      writeRefTable(table, i, next * cs);
      next++;
    }
    this.rc.writeBack();
    this.dev.write(table, tableCluster * cs);
    this.dev.flush();
    const old = this.rc.tablePlace();
    this.rc.replaceTable(table, tableCluster * cs);
    this.top = Math.max(this.top, end);
    this.hooks.switchRefTable({ offset: tableCluster * cs, clusters: tableClusters });
    for (let c = old.offset / cs; c < (old.offset + old.bytes) / cs; c++) {
      this.rc.releaseNow(c);
      this.freed(c);
    }
  }
}

/**
 * QEMU's qcow2_refcount_metadata_size: the number of refcount blocks that cover `clusters`
 * clusters plus the refcount structures themselves (a fixed point); `generous`: once more with
 * half the table's clusters added, so the table need not grow again soon.
 */
export function refcountBlocksFor(clusters: number, cs: number, perBlock: number, generous: boolean): number {
  const perTableCluster = cs / 8;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  do {
    last = n;
    blocks = Math.ceil((clusters + table + blocks) / perBlock);
    table = Math.ceil(blocks / perTableCluster);
    n = clusters + blocks + table;
    if (n === last && generous) {
      clusters += Math.ceil(table / 2);
      n = 0;
      generous = false;
    }
  } while (n !== last);
  return blocks;
}
