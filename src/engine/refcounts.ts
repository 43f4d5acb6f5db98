/**
 * Refcount table and refcount blocks (qcow2.txt "Host cluster management"). This layer reads and
 * updates refcounts of clusters whose refcount block exists; it never allocates. When a block is
 * missing it says so (`blockFor` returns 0) and the allocator provides one (`installBlock`).
 *
 * Decrements are deferred: `decrement` records them, and they reach the refcount blocks only in
 * `applyDecrements`, which the metadata writer calls (flush step 5) after the L2 and L1 tables that dropped the references
 * are on disk. So a crash can at worst leak a cluster, and a freed cluster cannot be reused (and
 * overwritten) while an on-disk table may still point at it.
 *
 * Discard passthrough (QEMU's update_refcount and qcow2_process_discards): every decrement has a
 * discard type — the operation that frees. When it brings a cluster to refcount 0 and the image
 * passes that type down (`passthrough`, qcow2_update_options_prepare's table), the cluster is queued
 * to become a hole in the image file; `takeDiscards` hands the queue over, merged into ranges, once
 * the refcounts are applied (flush step 5) — never while a table on disk may still point at it.
 */
import { CorruptionError, IoError, Qcow2Error } from '../errors.ts';
import { strerrorOf } from '../io/errno.ts';
import type { BlockDevice } from '../io/device.ts';
import {
  getRefcount,
  maxRefcount,
  readRefTable,
  refblockEntries,
  setRefcount,
  writeRefTable,
} from '../format/tables.ts';
import { zeroEntries } from '../format/zero-entries.ts';
import { TableCache, type WriteBackTarget } from './cache.ts';

/**
 * QEMU's enum qcow2_discard_type: which operation frees a cluster. never: a cluster the next write
 * reuses (COW-replaced data, an aborted allocation); always: shrink, make-empty, bitmap data;
 * request: a guest discard or zero write with unmap; snapshot: snapshot delete/revert and the old
 * snapshot table; other: replaced metadata (old L1, L2 and refcount tables).
 */
export type DiscardType = 'never' | 'always' | 'request' | 'snapshot' | 'other';

/** Which frees reach the file as discards (qcow2_update_options_prepare). */
export type DiscardPassthrough = Record<DiscardType, boolean>;

/**
 * QEMU's defaults: never off, always on, request as the open's unmap flag (BDRV_O_UNMAP: qemu-io's
 * default, `-d ignore` clears it), snapshot on, other off; pass-discard-{request,snapshot,other}
 * override the last three.
 */
export function discardPassthrough(opts: {
  unmap: boolean;
  request?: boolean;
  snapshot?: boolean;
  other?: boolean;
}): DiscardPassthrough {
  return {
    never: false,
    always: true,
    request: opts.request ?? opts.unmap,
    snapshot: opts.snapshot ?? true,
    other: opts.other ?? false,
  };
}

/** Ascending cluster offsets as [offset, bytes] runs (QEMU merges adjacent discard regions). */
function mergeRanges(offsets: number[], cs: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const off of offsets) {
    const last = ranges[ranges.length - 1];
    if (last && last[0] + last[1] === off) last[1] += cs;
    else ranges.push([off, cs]);
  }
  return ranges;
}

export class RefcountOverflowError extends Qcow2Error {
  constructor(cluster: number, max: number) {
    super(
      'REFCOUNT_OVERFLOW',
      `Refcount of cluster ${cluster} would exceed ${max} (refcount width too small)`,
      { cluster, max },
    );
  }
}

export class Refcounts implements WriteBackTarget {
  readonly clusterBits: number;
  readonly clusterSize: number;
  /** (Changed only by `reload`, after qemu-img amend rewrote the refcount structures.) */
  order: number;
  /** Refcount entries per block. */
  entriesPerBlock: number;
  max: number;
  private readonly cache: TableCache;
  /** The refcount table, in memory (at most 8 MiB by QEMU's limit). */
  private table: Uint8Array;
  private tableOffset: number;
  private tableDirty = false;
  private readonly pending = new Map<number, number>(); // cluster -> deferred decrement
  /** Which discard types reach the file (set at open from the runtime options). */
  passthrough: DiscardPassthrough = discardPassthrough({ unmap: true });
  /** Clusters whose last reference went with a passed-through type: holes to punch (step 5). */
  private readonly toDiscard = new Set<number>();
  /** The type of the operation under way (QEMU passes it down every free path), `freeing`. */
  private scopeType: DiscardType | undefined;

  constructor(
    private readonly dev: BlockDevice,
    opts: {
      clusterBits: number;
      order: number;
      tableOffset: number;
      tableClusters: number;
      cacheBlocks: number;
    },
  ) {
    this.clusterBits = opts.clusterBits;
    this.clusterSize = 2 ** opts.clusterBits;
    this.order = opts.order;
    this.entriesPerBlock = refblockEntries(opts.clusterBits, opts.order);
    this.max = maxRefcount(opts.order);
    this.tableOffset = opts.tableOffset;
    this.table = new Uint8Array(opts.tableClusters * this.clusterSize);
    dev.read(this.table, opts.tableOffset);
    this.cache = new TableCache(dev, this.clusterSize, opts.cacheBlocks, 'refcount block');
  }

  /**
   * Switch to refcount structures of another width that are already on disk with the header
   * pointing at them (qemu-img amend -o refcount_bits): the cached blocks and table are dropped.
   * Only between operations, with nothing dirty or pending.
   */
  reload(opts: { order: number; tableOffset: number; tableClusters: number }): void {
    if (this.isDirty() || this.hasPendingDecrements())
      throw new Error('internal: refcount reload while dirty');
    this.cache.clear();
    this.order = opts.order;
    this.entriesPerBlock = refblockEntries(this.clusterBits, opts.order);
    this.max = maxRefcount(opts.order);
    this.tableOffset = opts.tableOffset;
    this.table = new Uint8Array(opts.tableClusters * this.clusterSize);
    this.dev.read(this.table, opts.tableOffset);
  }

  get tableEntries(): number {
    return this.table.length / 8;
  }

  /** Where the refcount table is (for the overlap guard and relocation). */
  tablePlace(): { offset: number; bytes: number } {
    return { offset: this.tableOffset, bytes: this.table.length };
  }

  /** The table's entries copied into `dest` (a larger table being built). */
  copyTableInto(dest: Uint8Array): void {
    dest.set(this.table.subarray(0, Math.min(this.table.length, dest.length)));
  }

  /** Offset of the refcount block covering `cluster`, 0 when none. */
  blockFor(cluster: number): number {
    const i = Math.floor(cluster / this.entriesPerBlock);
    if (i >= this.tableEntries) return 0;
    const off = readRefTable(this.table, i);
    if (off !== 0 && off % this.clusterSize !== 0) {
      throw new CorruptionError(
        'CORRUPT_REFTABLE',
        // QEMU's words (qcow2-refcount.c), as its corruption signal prints them.
        `Refblock offset 0x${off.toString(16)} unaligned (reftable index: 0x${i.toString(16)})`,
        this.tableOffset + i * 8,
      );
    }
    return off;
  }

  /** Stored refcount (deferred decrements not applied). */
  stored(cluster: number): number {
    const block = this.blockFor(cluster);
    if (block === 0) return 0;
    return getRefcount(this.cache.get(block), cluster % this.entriesPerBlock, this.order);
  }

  /** Effective refcount: stored minus deferred decrements. */
  get(cluster: number): number {
    return this.stored(cluster) - (this.pending.get(cluster) ?? 0);
  }

  /** Is the cluster free for allocation (stored refcount 0; a deferred free is not free yet)? */
  isFree(cluster: number): boolean {
    return this.stored(cluster) === 0;
  }

  /**
   * Take back a cluster that was just allocated and never referenced by any table (a data write
   * that failed: qcow2_alloc_cluster_abort). Nothing on disk points at it, so it is free at once.
   */
  undoAlloc(cluster: number): void {
    this.dev.event?.('cluster_free');
    const block = this.blockFor(cluster);
    const t = this.cache.get(block);
    const idx = cluster % this.entriesPerBlock;
    const v = getRefcount(t, idx, this.order);
    if (v < 1) throw new Error(`internal: undoAlloc of free cluster ${cluster}`);
    setRefcount(t, idx, this.order, v - 1);
    this.cache.markDirty(block);
  }

  /** Add `delta` (> 0) now. The block must exist. */
  increment(cluster: number, delta = 1): void {
    const block = this.blockFor(cluster);
    if (block === 0) throw new Error(`internal: no refcount block for cluster ${cluster}`);
    const t = this.cache.get(block);
    const idx = cluster % this.entriesPerBlock;
    const v = getRefcount(t, idx, this.order) + delta;
    // The stored value must fit the width, even while a deferred decrement would bring it back.
    if (v > this.max) throw new RefcountOverflowError(cluster, this.max);
    setRefcount(t, idx, this.order, v);
    this.cache.markDirty(block);
  }

  /** Would adding `delta` to `cluster` overflow the stored value? */
  wouldOverflow(cluster: number, delta: number): boolean {
    return this.stored(cluster) + delta > this.max;
  }

  /**
   * Run `fn` as an operation that frees with discard `type` (QEMU's type argument of
   * qcow2_cluster_discard, qcow2_update_snapshot_refcount, ...): decrements that name no type take it.
   */
  freeing<T>(type: DiscardType, fn: () => T): T {
    const outer = this.scopeType;
    this.scopeType = type;
    try {
      return fn();
    } finally {
      this.scopeType = outer;
    }
  }

  /**
   * Record a deferred decrement (applied by applyDecrements after the tables are flushed). `type`:
   * the freeing operation's discard type (default: the `freeing` scope's, else never).
   */
  decrement(cluster: number, delta = 1, type?: DiscardType): void {
    this.dev.event?.('cluster_free'); // qcow2_free_clusters
    const eff = this.get(cluster);
    if (eff < delta) {
      throw new CorruptionError(
        'REFCOUNT_UNDERFLOW',
        `Refcount of cluster ${cluster} would drop below zero`,
        cluster * this.clusterSize,
        { refcount: eff },
      );
    }
    this.pending.set(cluster, (this.pending.get(cluster) ?? 0) + delta);
    if (eff === delta) {
      // update_refcount: refcount 0 with passthrough for this type queues the cluster's discard
      if (this.passthrough[type ?? this.scopeType ?? 'never']) this.toDiscard.add(cluster);
      this.onZero?.(cluster);
    }
  }

  /** Host offsets of an external data file's clusters to discard (they have no refcounts). */
  private dataFileDiscards: number[] = [];

  /** qcow2_free_any_cluster with a data file: its cluster is discarded when `type` passes through. */
  queueDataFileDiscard(offset: number, type?: DiscardType): void {
    if (this.passthrough[type ?? this.scopeType ?? 'never']) this.dataFileDiscards.push(offset);
  }

  /** The queued data-file discards as merged [offset, bytes] ranges; the queue is emptied. */
  takeDataFileDiscards(): Array<[number, number]> {
    if (this.dataFileDiscards.length === 0) return [];
    const sorted = [...new Set(this.dataFileDiscards)].sort((a, b) => a - b);
    this.dataFileDiscards = [];
    return mergeRanges(sorted, this.clusterSize);
  }

  /**
   * A cluster that reached refcount 0 outside `decrement` (the v2 shadow switch writes its refcount
   * blocks itself): queued for a hole when `type` passes through.
   */
  queueFreed(cluster: number, type: DiscardType): void {
    if (this.passthrough[type]) this.toDiscard.add(cluster);
  }

  /**
   * qcow2_process_discards: the queued clusters whose stored refcount is now 0, as merged
   * [offset, bytes] ranges in ascending order; the queue is emptied. Called after the decrements
   * are applied, so no table on disk points into a range.
   */
  takeDiscards(): Array<[number, number]> {
    if (this.toDiscard.size === 0) return [];
    const cs = this.clusterSize;
    const clusters = [...this.toDiscard].filter((c) => this.stored(c) === 0).sort((a, b) => a - b);
    this.toDiscard.clear();
    return mergeRanges(
      clusters.map((c) => c * cs),
      cs,
    );
  }

  /** Told when a decrement brings a cluster's effective refcount to 0 (QEMU lowers its cursor then). */
  onZero: ((cluster: number) => void) | undefined;

  /** Free once the pending decrements are applied (after the tables that dropped it are on disk). */
  freeAfterFlush(cluster: number): boolean {
    const p = this.pending.get(cluster);
    return p !== undefined && this.stored(cluster) === p;
  }

  /**
   * Where a failed free is reported. QEMU's qcow2_free_clusters prints its failure to stderr and
   * carries on (the cluster leaks; qemu-img check -r leaks repairs it).
   */
  onFreeFailure: (line: string) => void = (line) => {
    process.stderr.write(`${line}\n`);
  };

  /**
   * qcow2_free_clusters: a deferred decrement whose I/O failure is reported and swallowed (the
   * cluster leaks) instead of failing the operation — for frees QEMU makes that way (old tables).
   */
  free(cluster: number, delta = 1, type: DiscardType = this.scopeType ?? 'other'): void {
    try {
      this.decrement(cluster, delta, type);
    } catch (e) {
      if (!(e instanceof IoError)) throw e;
      this.onFreeFailure(`qcow2_free_clusters failed: ${strerrorOf(e)}`);
    }
  }

  hasPendingDecrements(): boolean {
    return this.pending.size > 0;
  }

  /** Apply deferred decrements to the cached blocks. Returns the clusters that became free. */
  applyDecrements(): number[] {
    const freed: number[] = [];
    for (const [cluster, delta] of this.pending) {
      const block = this.blockFor(cluster);
      const t = this.cache.get(block);
      const idx = cluster % this.entriesPerBlock;
      const v = getRefcount(t, idx, this.order) - delta;
      setRefcount(t, idx, this.order, v);
      this.cache.markDirty(block);
      if (v === 0) freed.push(cluster);
    }
    this.pending.clear();
    return freed;
  }

  /** Point table entry `index` at a new (already cached, zeroed or self-describing) block. */
  installBlock(index: number, blockOffset: number, block: Uint8Array): void {
    this.cache.put(blockOffset, block);
    writeRefTable(this.table, index, blockOffset);
    this.tableDirty = true;
  }

  /** A new block whose table entry goes into a table not switched in yet (refcount table growth). */
  cacheBlock(blockOffset: number, block: Uint8Array): void {
    this.cache.put(blockOffset, block);
  }

  /**
   * One reference less at once, not deferred: only for a cluster that nothing on disk can reach
   * any more (the old refcount table after the header switch to its successor was flushed).
   */
  releaseNow(cluster: number): void {
    this.dev.event?.('cluster_free');
    const block = this.blockFor(cluster);
    if (block === 0) throw new Error(`internal: no refcount block for cluster ${cluster}`);
    const t = this.cache.get(block);
    const idx = cluster % this.entriesPerBlock;
    const v = getRefcount(t, idx, this.order);
    if (v < 1 + (this.pending.get(cluster) ?? 0)) {
      throw new CorruptionError(
        'REFCOUNT_UNDERFLOW',
        `Refcount of cluster ${cluster} would drop below zero`,
        cluster * this.clusterSize,
        {
          refcount: v,
        },
      );
    }
    setRefcount(t, idx, this.order, v - 1);
    this.cache.markDirty(block);
    // the old refcount table (alloc_refcount_block frees it with QCOW2_DISCARD_OTHER)
    if (v === 1 && this.passthrough.other) this.toDiscard.add(cluster);
  }

  /**
   * After a shrink (QEMU's qcow2_shrink_reftable): table entries whose refcount block counts
   * nothing any more — every entry zero, apart from the block's own reference when it lies in the
   * range it covers — are cleared in the table (written back at the next flush, after which no
   * on-disk table points at the block). Returns the blocks dropped whose own refcount lives in
   * another block: the caller frees them once the cleared table is on disk.
   */
  dropUnusedBlocks(): number[] {
    const needsFree: number[] = [];
    for (let i = 0; i < this.tableEntries; i++) {
      const off = readRefTable(this.table, i);
      if (off === 0) continue;
      const block = this.cache.get(off);
      const own = off / this.clusterSize;
      const selfIdx = Math.floor(own / this.entriesPerBlock) === i ? own % this.entriesPerBlock : -1;
      // (a block of zero bytes with no deferred decrements counts nothing: one native comparison
      // instead of an entry-by-entry walk; after a shrink most blocks past the new end are empty)
      let used = false;
      const empty = this.pending.size === 0 && zeroEntries(block, 0, block.length, 1);
      for (let k = 0; k < this.entriesPerBlock && !used && !empty; k++) {
        const v = getRefcount(block, k, this.order) - (this.pending.get(i * this.entriesPerBlock + k) ?? 0);
        if (v !== 0 && !(k === selfIdx && v === 1)) used = true;
      }
      if (used) continue;
      writeRefTable(this.table, i, 0);
      this.tableDirty = true;
      this.cache.discard(off);
      if (selfIdx < 0) needsFree.push(own);
    }
    return needsFree;
  }

  /** Swap in a relocated, larger table (already written and flushed by the allocator). */
  replaceTable(table: Uint8Array, offset: number): void {
    this.table = table;
    this.tableOffset = offset;
    this.tableDirty = false;
  }

  isDirty(): boolean {
    return this.tableDirty || this.cache.isDirty();
  }

  /** Blocks first, then (after a flush, so it never points at an unwritten block) the table. */
  writeBack(): void {
    if (this.cache.isDirty()) {
      this.cache.writeBack();
      if (this.tableDirty) this.dev.flush();
    }
    if (this.tableDirty) {
      this.dev.write(this.table, this.tableOffset);
      this.tableDirty = false;
    }
  }
}
