/**
 * The shadow switch: a metadata change that no write order makes crash-safe, made visible by one
 * atomic write instead. Used for snapshot create, apply and delete on v2 images (compat=0.10),
 * which have no dirty bit (metadata.ts, beginUnorderedChange, covers v3).
 *
 * Why: QCOW_OFLAG_COPIED (bit 63 of L1/L2 entries) must be set exactly when the refcount is 1
 * (qcow2.txt "L1/L2 table entry"), and `qemu-img check` counts a mismatch in either direction as a
 * corruption. Snapshot operations change both the refcounts (refcount blocks) and the flags (the
 * active L1 and L2 tables): different clusters, so a crash between two in-place writes can always
 * leave one of them stale.
 *
 * How, in four steps:
 *   1. Every structure the change touches gets a copy in freshly allocated clusters: the active L1
 *      table, each L2 table whose COPIED flags change, the snapshot L1 tables a new snapshot takes,
 *      the snapshot table, each refcount block whose counts change, and the refcount table. The new
 *      refcount blocks hold the counts of the new state exactly (the old clusters already at their
 *      final value, 0 when nothing of the new state refers to them).
 *   2. Flush. Until here the header still names the old structures: the new clusters are only
 *      allocations (counted in the old refcount blocks: leaks at worst).
 *   3. One write of the header's first sector switches l1_size (@36), l1_table_offset (@40),
 *      refcount_table_offset (@48), refcount_table_clusters (@56), nb_snapshots (@60) and
 *      snapshots_offset (@64) together, then a flush. A sector write is atomic: a crash leaves the
 *      old state (plus leaks) or the new one.
 *   4. The engine's in-memory refcounts and L1 move to the new structures as soon as that write is
 *      done (the file reads the new state, durable or not; the flush of step 3 comes after, and may
 *      fail); the old clusters are free already (their counts in the new blocks are 0).
 * Guest data never moves. What remains the same (unchanged L2 tables and refcount blocks) is shared
 * by the old and the new structures.
 */
import { CorruptionError } from '../errors.ts';
import { setU32, setU64 } from '../format/bytes.ts';
import type { SnapshotEntry } from '../format/snapshot.ts';
import { encodeSnapshotTable } from '../format/snapshot.ts';
import {
  ClusterType,
  getRefcount,
  readL2,
  setRefcount,
  writeL1,
  writeL2,
  writeRefTable,
} from '../format/tables.ts';
import type { TablePlace } from './metadata.ts';
import { RefcountOverflowError } from './refcounts.ts';
import type { ImageState } from './state.ts';

/** The header's first sector: every field the switch changes lies in bytes 36..71. */
const HEADER_SECTOR = 512;

export interface ShadowChange {
  /**
   * The active L1 table after the change. Its entries name today's L2 tables; COPIED bits are
   * recomputed here, and L2 tables whose flags change are replaced by copies.
   */
  activeL1: Uint8Array;
  /** How many new snapshots take a copy of the final active L1 table (create: 1). */
  l1Copies: number;
  /** References dropped besides the old active tree's (a deleted snapshot's tree and L1 table). */
  dropped: ReadonlyMap<number, number>;
  /** Where the snapshot table is now (undefined when there is none). */
  oldTable: TablePlace | undefined;
  /** The next snapshot table, given where each L1 copy went. */
  snapshots(copyOffsets: readonly number[]): SnapshotEntry[];
  /** Called once the header names the new structures (before the last flush, which may fail). */
  switched(result: ShadowResult): void;
}

export interface ShadowResult {
  entries: SnapshotEntry[];
  tableBytes: number;
}

function add(m: Map<number, number>, c: number, d: number): void {
  const v = (m.get(c) ?? 0) + d;
  if (v === 0) m.delete(c);
  else m.set(c, v);
}

/** Apply `change` through shadow copies and one header-sector switch (module comment). */
export function shadowSwitch(s: ImageState, change: ShadowChange): ShadowResult {
  const meta = s.meta;
  const rc = s.rc;
  const map = s.map;
  const dev = s.device;
  const cs = s.clusterSize;
  const h = s.header;
  meta.flush(); // the old state, complete on disk; caches clean, no deferred decrement
  const k = 1 + change.l1Copies; // trees that will walk the final active L1's L2 tables
  const oldL1 = map.l1Copy();
  const oldL1Place = map.l1Place();

  // Reference changes (cluster → delta), as QEMU's check counts them: per tree walk.
  const delta = new Map<number, number>();
  const nextRefs = map.treeReferences(change.activeL1, oldL1Place.offset);
  for (const [c, n] of nextRefs) add(delta, c, k * n);
  for (const [c, n] of map.treeReferences()) add(delta, c, -n);
  for (const [c, n] of change.dropped) add(delta, c, -n);
  if (change.oldTable)
    for (let i = 0; i < change.oldTable.clusters; i++) add(delta, change.oldTable.offset / cs + i, -1);
  const next = (c: number): number => rc.get(c) + (delta.get(c) ?? 0);
  // Refuse before anything is allocated: an overflow or an underflow leaves the image untouched.
  for (const c of delta.keys()) {
    const v = next(c);
    if (v > rc.max) throw new RefcountOverflowError(c, rc.max);
    if (v < 0)
      throw new CorruptionError(
        'REFCOUNT_UNDERFLOW',
        `Refcount of cluster ${c} would drop below zero`,
        c * cs,
        {
          refcount: rc.get(c),
        },
      );
  }

  // L2 tables of the final active tree whose COPIED flags change go to fresh clusters.
  const l2Copies = new Map<number, { offset: number; table: Uint8Array }>();
  const entries = change.activeL1.length / 8;
  for (let i = 0; i < entries; i++) {
    const t = map.l2OffsetAt(i, change.activeL1, oldL1Place.offset);
    if (t === 0 || l2Copies.has(t)) continue;
    const table = new Uint8Array(cs);
    dev.read(table, t);
    let changed = false;
    for (let j = 0; j < map.l2Entries; j++) {
      const e = readL2(table, j, map.clusterBits, map.extendedL2, map.dataFile);
      if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) continue;
      const want = next(e.hostOffset / cs) === 1; // COPIED: "refcount is exactly 1"
      if (e.copied === want) continue;
      writeL2(table, j, map.clusterBits, map.extendedL2, {
        type: e.type,
        hostOffset: e.hostOffset,
        copied: want,
        allocBitmap: e.allocBitmap,
        zeroBitmap: e.zeroBitmap,
      });
      changed = true;
    }
    if (!changed) continue;
    const offset = s.alloc.alloc(1);
    const n = nextRefs.get(t / cs) ?? 0;
    // The final trees walk the copy instead of the original; the copy's allocation counts 1.
    add(delta, t / cs, -k * n);
    add(delta, offset / cs, k * n - 1);
    l2Copies.set(t, { offset, table });
  }

  // The final active L1: copies substituted, COPIED from the final refcount of each L2 table.
  const l1 = new Uint8Array(change.activeL1.length);
  for (let i = 0; i < entries; i++) {
    const t = map.l2OffsetAt(i, change.activeL1, oldL1Place.offset);
    if (t === 0) continue;
    const to = l2Copies.get(t)?.offset ?? t;
    writeL1(l1, i, to, next(to / cs) === 1);
  }
  const l1Clusters = Math.ceil(l1.length / cs);
  const sameL1 = l1.length === oldL1.length && Buffer.compare(l1, oldL1) === 0;
  let l1Offset = oldL1Place.offset;
  if (!sameL1 && l1.length > 0) {
    l1Offset = s.alloc.alloc(l1Clusters);
    for (let c = 0; c < Math.ceil(oldL1Place.bytes / cs); c++) add(delta, oldL1Place.offset / cs + c, -1);
  }
  // Each new snapshot's L1 table is a copy of the final active one (its L2 tables are shared).
  const copyOffsets: number[] = [];
  for (let n = 0; n < change.l1Copies; n++) {
    copyOffsets.push(l1.length > 0 ? s.alloc.alloc(l1Clusters) : 0);
    // Every L2 table the copy reaches is counted by `k` above; the copy itself by its allocation.
  }
  const snapshots = change.snapshots(copyOffsets);
  const tableBytes = encodeSnapshotTable(snapshots, h.version);
  const tablePlace: TablePlace = { offset: 0, clusters: Math.ceil(tableBytes.length / cs) };
  if (tablePlace.clusters > 0) tablePlace.offset = s.alloc.alloc(tablePlace.clusters);

  // Refcount blocks whose counts change are copied too; so is the refcount table, which names them.
  // Allocating a copy drops the old block's own reference (and may touch another block): repeat
  // until every changed block has its copy and the table copy is as large as the table.
  const E = rc.entriesPerBlock;
  const blockCopies = new Map<number, number>(); // block index → offset of its copy
  let reftable: TablePlace | undefined;
  let countedTable: { offset: number; bytes: number } | undefined;
  for (;;) {
    const now = rc.tablePlace();
    if (!countedTable || countedTable.offset !== now.offset) {
      // The allocator may have grown (moved) the table: the old one is freed by its own relocation.
      if (countedTable)
        for (let c = 0; c < countedTable.bytes / cs; c++) add(delta, countedTable.offset / cs + c, 1);
      for (let c = 0; c < now.bytes / cs; c++) add(delta, now.offset / cs + c, -1);
      countedTable = now;
    }
    const missing = [...new Set([...delta.keys()].map((c) => Math.floor(c / E)))].filter(
      (i) => !blockCopies.has(i),
    );
    const clusters = now.bytes / cs;
    if (missing.length === 0 && reftable?.clusters === clusters) break;
    for (const i of missing) {
      const old = rc.blockFor(i * E);
      blockCopies.set(i, s.alloc.alloc(1));
      if (old !== 0) add(delta, old / cs, -1);
    }
    if (reftable?.clusters !== clusters) {
      if (reftable) for (let c = 0; c < reftable.clusters; c++) add(delta, reftable.offset / cs + c, -1);
      reftable = { offset: s.alloc.alloc(clusters), clusters };
    }
  }
  // The allocations reach the old refcount blocks (in place: leaks until the switch).
  meta.flush();

  // From here on the counts on disk are those of the old state plus the allocations.
  const blocks = new Map<number, Uint8Array>();
  const oldBlocks = new Map<number, number>(); // block index → the block it replaces (0: none)
  const oldRefTable = rc.tablePlace();
  for (const [i, offset] of blockCopies) {
    const block = new Uint8Array(cs);
    const old = rc.blockFor(i * E);
    oldBlocks.set(i, old);
    if (old !== 0) dev.read(block, old);
    blocks.set(offset, block);
    for (let j = 0; j < E; j++) {
      const d = delta.get(i * E + j);
      if (d === undefined) continue;
      const v = getRefcount(block, j, rc.order) + d;
      if (v < 0 || v > rc.max) throw new Error(`internal: shadow refcount ${v} for cluster ${i * E + j}`);
      setRefcount(block, j, rc.order, v);
    }
  }
  const table = new Uint8Array(reftable!.clusters * cs);
  rc.copyTableInto(table);
  for (const [i, offset] of blockCopies) writeRefTable(table, i, offset);

  // 1. the copies, in clusters nothing on disk names yet
  for (const { offset, table: t } of l2Copies.values()) dev.write(t, offset);
  if (!sameL1 && l1.length > 0) dev.write(padTo(l1, l1Clusters * cs), l1Offset);
  for (const off of copyOffsets) if (off !== 0) dev.write(padTo(l1, l1Clusters * cs), off);
  if (tablePlace.clusters > 0) dev.write(tableBytes, tablePlace.offset);
  for (const [offset, block] of blocks) dev.write(block, offset);
  dev.write(table, reftable!.offset);
  // 2. all of it durable before anything names it
  dev.flush();
  // 3. the switch: one write of the header's first sector, then a flush
  const sector = new Uint8Array(HEADER_SECTOR);
  dev.read(sector, 0);
  setU32(sector, 36, l1.length / 8);
  setU64(sector, 40, l1Offset);
  setU64(sector, 48, reftable!.offset);
  setU32(sector, 56, reftable!.clusters);
  setU32(sector, 60, snapshots.length);
  setU64(sector, 64, tablePlace.offset);
  dev.write(sector, 0);
  // 4. the engine follows the header — before the flush: once the write is done the file reads
  // the new state, durable or not, so a failing flush must not leave the engine on the old one
  h.l1Size = l1.length / 8;
  h.l1TableOffset = l1Offset;
  h.refcountTableOffset = reftable!.offset;
  h.refcountTableClusters = reftable!.clusters;
  h.nbSnapshots = snapshots.length;
  h.snapshotsOffset = tablePlace.offset;
  rc.reload({ order: rc.order, tableOffset: reftable!.offset, tableClusters: reftable!.clusters });
  map.adoptL1(l1, l1Offset);
  for (const t of l2Copies.keys()) map.forgetTable(t);
  // The copies were written past the L2 cache: a clean entry it still holds for one of their
  // clusters (an L2 table freed earlier in the session, whose cluster was reused) is stale.
  for (const { offset } of l2Copies.values()) map.forgetTable(offset);
  // Every cluster this change frees may be reused at once: nothing cached may stand for it.
  for (const [c, d] of delta) if (d < 0 && rc.get(c) === 0) map.forgetTable(c * cs);
  for (const [c, d] of delta) if (d < 0 && rc.get(c) === 0) s.alloc.freed(c);
  const result = { entries: snapshots, tableBytes: tableBytes.length };
  change.switched(result);
  dev.flush();
  // Discard passthrough (refcounts.ts), now that the header names the new structures: what the
  // snapshot operation freed goes with QCOW2_DISCARD_SNAPSHOT; the structures this switch replaced
  // by copies (QEMU changes them in place) as replaced metadata, QCOW2_DISCARD_OTHER.
  const replaced = new Set<number>([...l2Copies.keys()].map((t) => t / cs));
  for (let c = 0; c < Math.ceil(oldL1Place.bytes / cs); c++)
    if (!sameL1) replaced.add(oldL1Place.offset / cs + c);
  for (const i of blockCopies.keys()) if (oldBlocks.get(i)) replaced.add(oldBlocks.get(i)! / cs);
  for (let c = 0; c < oldRefTable.bytes / cs; c++) replaced.add(oldRefTable.offset / cs + c);
  for (const [c, d] of delta)
    if (d < 0 && rc.get(c) === 0) rc.queueFreed(c, replaced.has(c) ? 'other' : 'snapshot');
  for (const [off, bytes] of rc.takeDiscards()) dev.discard?.(off, bytes);
  return result;
}

/** `bytes` zero-padded to `length` (a table written as whole clusters). */
function padTo(bytes: Uint8Array, length: number): Uint8Array {
  if (bytes.length === length) return bytes;
  const out = new Uint8Array(length);
  out.set(bytes);
  return out;
}

/** Only v2 images take this path: v3 has the dirty bit (incompatible bit 0, metadata.ts). */
export function needsShadowSwitch(s: ImageState): boolean {
  return s.header.version < 3;
}
