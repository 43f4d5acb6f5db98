/**
 * The checker's rebuild (rebuild_refcount_structure): new refcount blocks and a new refcount table
 * written from the counts the walk computed, placed by first fit among the clusters nothing uses,
 * then the header pointed at them through the header codec's in-place patch.
 */
import { refcountTablePatch } from '../format/header.ts';
import { setRefcount, writeRefTable } from '../format/tables.ts';
import type { RefcountArray } from './refcount-array.ts';
import type { Checker } from './walk.ts';
import { CheckAbort, EIO, type Res } from './walk-basics.ts';

/** alloc_clusters_imrt: first fit from `state.firstFree`, growing the array at the end. */
function allocImrt(ck: Checker, imrt: RefcountArray, count: number, state: { firstFree: number }): number {
  let cluster = state.firstFree;
  let contiguous = 0;
  let firstGap = true;
  for (; cluster < imrt.nb && contiguous < count; cluster++) {
    if (!imrt.get(cluster)) {
      contiguous++;
      if (firstGap) {
        state.firstFree = cluster;
        firstGap = false;
      }
    } else if (contiguous) contiguous = 0;
  }
  if (contiguous < count) imrt.ensure(cluster + count - contiguous);
  cluster -= contiguous;
  for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
  return cluster * ck.cs;
}

/** rebuild_refcounts_write_refblocks; returns whether the new reftable grew. */
function writeRefblocks(
  ck: Checker,
  imrt: RefcountArray,
  first: number,
  end: number,
  table: number[],
): boolean {
  const state = { firstFree: 0 };
  let grown = false;
  for (let cluster = first; cluster < end; cluster++) {
    if (!imrt.get(cluster)) continue;
    const rbIndex = Math.floor(cluster / ck.rbEntries);
    const rbStart = rbIndex * ck.rbEntries;
    let rbOffset: number;
    if (rbIndex < table.length && table[rbIndex]) {
      rbOffset = table[rbIndex]!;
    } else {
      // Never allocate inside a refblock already written.
      if (state.firstFree < rbStart) state.firstFree = rbStart;
      rbOffset = allocImrt(ck, imrt, 1, state);
      const rbCluster = rbOffset / ck.cs;
      if (rbCluster >= end) end = rbCluster + 1; // its own refcount must be written too
      if (table.length <= rbIndex) {
        const entries = Math.ceil(((rbIndex + 1) * 8) / ck.cs) * (ck.cs / 8);
        while (table.length < entries) table.push(0);
        grown = true;
      }
      table[rbIndex] = rbOffset;
    }
    const block = new Uint8Array(ck.cs);
    for (let i = 0; i < ck.rbEntries; i++) {
      const v = imrt.get(rbStart + i);
      if (v) setRefcount(block, i, ck.order, v);
    }
    const kind = ck.overlap(rbOffset, ck.cs, []);
    if (kind !== undefined) {
      ck.signalCorruption(true, `Preventing invalid write on metadata (overlaps with ${kind})`);
      ck.msg(`qemu-img: ERROR writing refblock: ${EIO}`);
      throw new CheckAbort(EIO);
    }
    ck.dev.write(block, rbOffset);
    cluster = rbStart + ck.rbEntries - 1;
  }
  return grown;
}

/** Write new refblocks and a new reftable from the computed refcounts; point the header at them. */
export function rebuildRefcounts(ck: Checker, _res: Res, imrt: RefcountArray): void {
  ck.dropCache(); // qcow2_cache_empty: what the cache holds is written, then forgotten
  const table: number[] = [];
  writeRefblocks(ck, imrt, 0, imrt.nb, table);
  let grown: boolean;
  let reftableOffset: number;
  let reftableClusters: number;
  do {
    reftableClusters = Math.ceil((table.length * 8) / ck.cs);
    reftableOffset = allocImrt(ck, imrt, reftableClusters, { firstFree: 0 });
    const start = reftableOffset / ck.cs;
    grown = writeRefblocks(ck, imrt, start, start + reftableClusters, table);
  } while (grown);
  const rt = new Uint8Array(table.length * 8);
  table.forEach((off, i) => writeRefTable(rt, i, off));
  const kind = ck.overlap(reftableOffset, rt.length, []);
  if (kind !== undefined) {
    ck.signalCorruption(true, `Preventing invalid write on metadata (overlaps with ${kind})`);
    ck.msg(`qemu-img: ERROR writing reftable: ${EIO}`);
    throw new CheckAbort(EIO);
  }
  ck.dev.write(rt, reftableOffset);
  ck.dev.flush();
  // The header points at the new table (refcount_table_offset and _clusters, patched in place).
  const patch = refcountTablePatch(reftableOffset, reftableClusters);
  ck.dev.write(patch.bytes, patch.at);
  ck.dev.flush();
  ck.hstate.refcountTableOffset = reftableOffset;
  ck.hstate.refcountTableClusters = reftableClusters;
  ck.reftableOffset = reftableOffset;
  ck.reftable = table;
  ck.reftableReserved = table.map(() => false);
  ck.reftableUnaligned = table.map(() => false);
  ck.reftableExact = new Map();
  ck.dropCache();
}
