/**
 * `check -r all`'s repair of the snapshot table (qcow2_check_fix_snapshot_table, which calls
 * qcow2_write_snapshots, QEMU 7.2): when the table read found entries to repair (v3 entries with
 * less than 16 bytes of extra data), the whole table is written anew — every entry with QEMU's full
 * 24 bytes of known extra data — into newly allocated clusters; the header's nb_snapshots and
 * snapshots_offset are switched to it; the old table's clusters are freed.
 *
 * Runs after the refcount check, whose repairs make the allocation safe. Allocation is QEMU's:
 * first fit over the stored refcounts from cluster 0 (qcow2_alloc_clusters with a fresh
 * free_cluster_index), the new clusters counted before the table is written.
 */
import { setU16, setU32, setU64, setU64n, textEncoder } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import type { SnapshotEntry } from '../format/snapshot.ts';
import type { Checker } from './walk.ts';
import { CheckAbort, EIO } from './walk-basics.ts';

/** A C string's bytes: QEMU holds id and name as NUL-terminated strings and writes strlen() bytes. */
function cString(s: string): Uint8Array {
  const nul = s.indexOf('\0');
  return textEncoder.encode(nul < 0 ? s : s.slice(0, nul));
}

/** The table qcow2_write_snapshots writes for `entries` of an image of `diskSize` bytes. */
export function qemuSnapshotTable(entries: readonly SnapshotEntry[], diskSize: number): Uint8Array {
  const parts = entries.map((e) => ({ e, id: cString(e.id), name: cString(e.name) }));
  let size = 0;
  for (const p of parts) {
    size = Math.ceil(size / 8) * 8;
    size += C.SNAPSHOT_ENTRY_FIXED_SIZE + 24 + p.e.unknownExtraData.length + p.id.length + p.name.length;
  }
  const b = new Uint8Array(size);
  let o = 0;
  for (const { e, id, name } of parts) {
    o = Math.ceil(o / 8) * 8;
    // The 64-bit VM state size comes from the extra data when present, else from the 32-bit field;
    // the 32-bit field keeps it only when it fits (older readers then see a disk-only snapshot).
    const vmState = e.vmStateSizeLarge ?? e.vmStateSize;
    setU64n(b, o, e.l1TableOffsetExact ?? BigInt(e.l1TableOffset)); // exact past 2^53
    setU32(b, o + 8, e.l1Size);
    setU16(b, o + 12, id.length);
    setU16(b, o + 14, name.length);
    setU32(b, o + 16, e.dateSec);
    setU32(b, o + 20, e.dateNsec);
    setU64n(b, o + 24, BigInt.asUintN(64, e.vmClockNsec));
    setU32(b, o + 32, vmState <= 0xffffffff ? vmState : 0);
    setU32(b, o + 36, 24 + e.unknownExtraData.length);
    o += C.SNAPSHOT_ENTRY_FIXED_SIZE;
    setU64(b, o, vmState);
    // A missing disk_size is the image's current size; a missing icount is -1 (not recorded).
    setU64(b, o + 8, e.diskSize ?? diskSize);
    setU64n(b, o + 16, BigInt.asUintN(64, e.icount ?? -1n));
    o += 24;
    b.set(e.unknownExtraData, o);
    o += e.unknownExtraData.length;
    b.set(id, o);
    o += id.length;
    b.set(name, o);
    o += name.length;
  }
  return b;
}

/** Write the snapshot table anew and point the header at it. Throws CheckAbort on failure. */
export function writeSnapshots(ck: Checker): void {
  const table = qemuSnapshotTable(ck.snapshots, Math.floor(ck.h.size / 512) * 512);
  if (table.length > C.QCOW_MAX_SNAPSHOTS_SIZE) throw new CheckAbort('File too large');
  const clusters = Math.max(1, Math.ceil(table.length / ck.cs));
  const offset = table.length ? ck.allocClusters(clusters) : 0;
  ck.flushRefblocks();
  // "The snapshot list position has not yet been updated, so these clusters must indeed be
  // completely free": the overlap guard still looks.
  if (table.length && !ck.mayWrite(offset, table.length, [])) throw new CheckAbort(EIO);
  if (table.length) ck.dev.write(table, offset);
  ck.dev.flush();
  // nb_snapshots (u32 at 60) and snapshots_offset (u64 at 64), in place.
  const ptr = new Uint8Array(12);
  setU32(ptr, 0, ck.snapshots.length);
  setU64(ptr, 4, offset);
  ck.dev.write(ptr, 60);
  ck.dev.flush();
  const oldOffset = ck.hstate.snapshotsOffset;
  const oldSize = ck.snapshotsSize;
  ck.hstate.nbSnapshots = ck.snapshots.length;
  ck.hstate.snapshotsOffset = offset;
  // QCOW2_DISCARD_SNAPSHOT: passed down by default.
  ck.freeClusters(oldOffset, oldSize, true);
  ck.snapshotsSize = table.length;
}
