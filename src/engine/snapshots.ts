/**
 * Internal snapshots (qcow2.txt "Snapshots"): loading the snapshot table, and counting the
 * references one L1 tree holds — the walk QEMU's qcow2_update_snapshot_refcount does, used to
 * raise refcounts when a snapshot is taken or applied and to lower them when one is dropped.
 */
import { CorruptionError } from '../errors.ts';
import type { BlockDevice } from '../io/device.ts';
import * as C from '../format/constants.ts';
import { u16, u32 } from '../format/bytes.ts';
import { decodeSnapshotTable, type SnapshotEntry } from '../format/snapshot.ts';
import { ClusterType, readL2 } from '../format/tables.ts';
import type { Header } from '../format/header.ts';
import type { ClusterMap } from './cluster-map.ts';

/** Read the snapshot table entry by entry (its byte size is not in the header). */
export function loadSnapshotTable(dev: BlockDevice, h: Header): SnapshotEntry[] {
  if (h.nbSnapshots === 0) return [];
  const fileSize = dev.size();
  const chunks: Uint8Array[] = [];
  let off = 0;
  const fixed = new Uint8Array(C.SNAPSHOT_ENTRY_FIXED_SIZE);
  for (let i = 0; i < h.nbSnapshots; i++) {
    const pad = (8 - (off % 8)) % 8;
    if (pad) chunks.push(new Uint8Array(pad));
    off += pad;
    const at = h.snapshotsOffset + off;
    if (at + C.SNAPSHOT_ENTRY_FIXED_SIZE > fileSize) {
      throw new CorruptionError(
        'TRUNCATED_SNAPSHOT_TABLE',
        `Snapshot table entry ${i} lies beyond the end of the image`,
        at,
        { index: i },
      );
    }
    dev.read(fixed, at);
    const rest = u32(fixed, 36) + u16(fixed, 12) + u16(fixed, 14);
    if (u32(fixed, 36) > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) break; // the decoder reports it
    const entry = new Uint8Array(C.SNAPSHOT_ENTRY_FIXED_SIZE + rest);
    dev.read(entry, at);
    chunks.push(entry);
    off += entry.length;
    if (off > C.QCOW_MAX_SNAPSHOTS_SIZE) break; // the decoder reports it
  }
  const bytes = new Uint8Array(off);
  let p = 0;
  for (const c of chunks) {
    bytes.set(c, p);
    p += c.length;
  }
  return decodeSnapshotTable(bytes, h.nbSnapshots, h.version, {
    clusterBits: h.clusterBits,
    tableOffset: h.snapshotsOffset,
  });
}

/** Read a snapshot's L1 table. */
export function readSnapshotL1(dev: BlockDevice, sn: SnapshotEntry): Uint8Array {
  const l1 = new Uint8Array(sn.l1Size * 8);
  if (sn.l1Size > 0) {
    if (sn.l1TableOffset + l1.length > dev.size()) {
      throw new CorruptionError(
        'CORRUPT_SNAPSHOT_L1',
        `Snapshot ${sn.id} (${sn.name}): L1 table lies beyond the end of the image`,
        sn.l1TableOffset,
        { id: sn.id },
      );
    }
    dev.read(l1, sn.l1TableOffset);
  }
  return l1;
}

/**
 * Every reference an L1 tree holds, as cluster index → count: the L2 tables, their data clusters
 * (preallocated zero clusters included), and each host cluster a compressed range touches.
 */
export function countTreeReferences(map: ClusterMap, l1: Uint8Array, l1Offset: number): Map<number, number> {
  const counts = new Map<number, number>();
  const add = (c: number): void => {
    counts.set(c, (counts.get(c) ?? 0) + 1);
  };
  const cs = map.clusterSize;
  for (let i = 0; i < l1.length / 8; i++) {
    const l2 = map.l2OffsetAt(i, l1, l1Offset);
    if (l2 === 0) continue;
    add(l2 / cs);
    const table = map.cache.get(l2);
    for (let j = 0; j < map.l2Entries; j++) {
      const e = readL2(table, j, map.clusterBits, map.extendedL2, map.dataFile);
      if (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) add(e.hostOffset / cs);
      else if (e.type === ClusterType.Compressed) {
        const last = Math.floor((e.hostOffset + e.compressedLength - 1) / cs);
        for (let c = Math.floor(e.hostOffset / cs); c <= last; c++) add(c);
      }
    }
  }
  return counts;
}

/** QEMU's rule for a new snapshot id: one more than the largest numeric id. */
export function newSnapshotId(entries: readonly SnapshotEntry[]): string {
  let max = 0;
  for (const e of entries) {
    const n = Number.parseInt(e.id, 10);
    if (Number.isFinite(n) && n > max) max = n;
  }
  return String(max + 1);
}

/** Find by id first, then by name (QEMU's find_snapshot_by_id_or_name). */
export function findSnapshot(entries: readonly SnapshotEntry[], idOrName: string): number {
  const byId = entries.findIndex((e) => e.id === idOrName);
  return byId >= 0 ? byId : entries.findIndex((e) => e.name === idOrName);
}
