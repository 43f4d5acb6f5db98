/**
 * Internal snapshots (qcow2.txt "Snapshots"): loading the snapshot table, the id and lookup rules,
 * and the operations — create, apply, delete, read, and the crash-safe table rewrite. Refcounts of
 * a tree move with the cluster map's reference walk (QEMU's qcow2_update_snapshot_refcount).
 */
import { CorruptionError } from '../errors.ts';
import type { BlockDevice } from '../io/device.ts';
import * as C from '../format/constants.ts';
import { u16, u32 } from '../format/bytes.ts';
import type { SnapshotInfo } from '../api.ts';
import { ArgumentError, IoError, Qcow2Error, UnsupportedError } from '../errors.ts';
import { strerrorOf } from '../io/errno.ts';
import { alignUp } from '../format/bytes.ts';
import {
  decodeSnapshotTable,
  encodeSnapshotTable,
  snapshotTableSize,
  type SnapshotEntry,
} from '../format/snapshot.ts';
import type { Header } from '../format/header.ts';
import { ClusterType } from '../format/tables.ts';
import type { DataPath } from './data-path.ts';
import { RefcountOverflowError } from './refcounts.ts';
import { needsShadowSwitch, shadowSwitch, type ShadowChange } from './shadow-switch.ts';
import type { ImageState } from './state.ts';

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
    if (u32(fixed, 36) > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
      // The decoder refuses this entry from its fixed part ("Too much extra metadata").
      chunks.push(fixed.slice());
      off += fixed.length;
      break;
    }
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

/**
 * Snapshot operations on an open image (qcow2-snapshot.c): create, apply (revert), delete, read
 * through a snapshot's tree, and the snapshot table rewrite.
 */
export class Snapshots {
  private entries: SnapshotEntry[];

  constructor(
    private readonly s: ImageState,
    private readonly dp: DataPath,
  ) {
    this.entries = loadSnapshotTable(s.device, s.header);
    s.meta.snapshotTableBytes = snapshotTableSize(this.entries);
  }

  list(): SnapshotInfo[] {
    return this.entries.map((e) => ({
      // QEMU holds both as C strings: what follows a NUL byte is not listed.
      id: cString(e.id),
      name: cString(e.name),
      vmStateSize: e.vmStateSizeLarge ?? e.vmStateSize,
      dateSec: e.dateSec,
      dateNsec: e.dateNsec,
      vmClockNsec: Number(e.vmClockNsec),
      diskSize: e.diskSize,
      icount: e.icount === undefined || e.icount < 0n ? undefined : Number(e.icount),
      l1TableOffset: e.l1TableOffset,
      l1Size: e.l1Size,
    }));
  }

  private snapshotIndex(idOrName: string): number {
    const i = findSnapshot(this.entries, idOrName);
    if (i < 0)
      throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `Can't find snapshot '${idOrName}'`, { snapshot: idOrName });
    return i;
  }

  private refuseSnapshotsWithDataFile(): void {
    if (this.s.hasDataFile) {
      throw new UnsupportedError(
        'SNAPSHOT_DATA_FILE',
        'Internal snapshots are not supported with an external data file',
        {},
      );
    }
  }

  /** Raise refcounts for every reference of a tree, after checking none would overflow. */
  private raiseTree(counts: Map<number, number>): void {
    for (const [c, n] of counts) {
      if (this.s.rc.wouldOverflow(c, n)) throw new RefcountOverflowError(c, this.s.rc.max);
    }
    for (const [c, n] of counts) this.s.rc.increment(c, n);
  }

  /** Snapshot operations free with QCOW2_DISCARD_SNAPSHOT (qcow2_write_snapshots' old table). */
  create(name: string, opts: { id?: string; vmStateSize?: number } = {}): SnapshotInfo {
    return this.s.rc.freeing('snapshot', () => this.createSnapshot(name, opts));
  }

  private createSnapshot(name: string, opts: { id?: string; vmStateSize?: number }): SnapshotInfo {
    this.refuseSnapshotsWithDataFile();
    const id = opts.id ?? newSnapshotId(this.entries);
    if (this.entries.some((e) => e.id === id)) {
      throw new Qcow2Error('SNAPSHOT_EXISTS', `Snapshot with id '${id}' already exists`, { id });
    }
    this.s.meta.flush();
    const cs = this.s.clusterSize;
    // Check for refcount overflow before anything changes: a refused snapshot leaves the image
    // exactly as it was (no cluster allocated, no refcount raised).
    const counts = this.s.map.treeReferences();
    for (const [c, n] of counts) {
      if (this.s.rc.wouldOverflow(c, n)) throw new RefcountOverflowError(c, this.s.rc.max);
    }
    const l1Size = this.s.map.l1Size;
    if (needsShadowSwitch(this.s)) {
      // v2 (no dirty bit): shadow copies switched by one header sector (shadow-switch.ts).
      this.shadow({
        activeL1: this.s.map.l1Copy(),
        l1Copies: 1,
        dropped: new Map(),
        snapshots: ([l1Offset]) => [...this.entries, this.newEntry(id, name, opts, l1Offset ?? 0, l1Size)],
      });
      return this.list().find((s) => s.id === id)!;
    }
    // v3: under the dirty bit (metadata.ts, beginUnorderedChange).
    const dirty = this.s.meta.beginUnorderedChange();
    let l1Offset = 0;
    if (l1Size > 0) {
      const bytes = alignUp(l1Size * 8, cs);
      l1Offset = this.s.alloc.alloc(bytes / cs);
      // Only the table's own bytes, as qcow2_snapshot_create writes them (the rest of the cluster
      // is never read; written zeros would take file space QEMU's image does not).
      this.s.device.write(this.s.map.l1Copy(), l1Offset);
    }
    // qcow2.txt: COPIED (bit 63) "must be 0" unless the refcount is exactly 1. Every cluster the
    // active tree reaches becomes shared, so the flags go first, flushed before the refcounts
    // rise: a crash between leaves COPIED clear on a refcount of 1 (an unneeded copy-on-write),
    // never set on a shared cluster (a write in place would change the snapshot). QEMU 7.2 raises
    // the refcounts first (qcow2_update_snapshot_refcount) and can leave the latter.
    this.s.map.updateCopiedFlags(() => false);
    this.s.meta.flush();
    this.raiseTree(counts);
    // The raised refcounts, then the new snapshot table and the header that points at it.
    this.s.meta.flush();
    this.writeTable([...this.entries, this.newEntry(id, name, opts, l1Offset, l1Size)]);
    this.s.meta.endUnorderedChange(dirty);
    return this.list().find((s) => s.id === id)!;
  }

  /** A new snapshot's table entry. */
  private newEntry(
    id: string,
    name: string,
    opts: { vmStateSize?: number },
    l1TableOffset: number,
    l1Size: number,
  ): SnapshotEntry {
    const now = Date.now();
    return {
      l1TableOffset,
      l1Size,
      id,
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1_000_000,
      vmClockNsec: 0n,
      // The 32-bit field holds 0 when the size needs the extra data's 64-bit one (v3).
      vmStateSize: (opts.vmStateSize ?? 0) <= 0xffffffff ? (opts.vmStateSize ?? 0) : 0,
      vmStateSizeLarge: opts.vmStateSize ?? 0,
      diskSize: this.s.size,
      icount: 0n, // what qemu-img snapshot -c stores (its snapshot info is zero-initialised)
      unknownExtraData: new Uint8Array(0),
    };
  }

  /** A v2 change through the shadow switch; the engine's caches follow the new tables. */
  private shadow(change: Omit<ShadowChange, 'oldTable' | 'switched'>): void {
    const h = this.s.header;
    const cs = this.s.clusterSize;
    shadowSwitch(this.s, {
      ...change,
      oldTable:
        h.nbSnapshots > 0
          ? { offset: h.snapshotsOffset, clusters: Math.ceil(snapshotTableSize(this.entries) / cs) }
          : undefined,
      switched: (r) => {
        this.entries = r.entries;
        this.s.meta.snapshotTableBytes = r.tableBytes;
        this.dp.invalidate();
        this.s.alloc.resetBytes();
      },
    });
  }

  /** qcow2_snapshot_goto: the old active tree is freed with QCOW2_DISCARD_SNAPSHOT. */
  apply(idOrName: string): void {
    this.s.rc.freeing('snapshot', () => this.applySnapshot(idOrName));
  }

  private applySnapshot(idOrName: string): void {
    this.refuseSnapshotsWithDataFile();
    const sn = this.entries[this.snapshotIndex(idOrName)]!;
    this.s.meta.flush();
    const snL1 = readSnapshotL1(this.s.device, sn);
    if (needsShadowSwitch(this.s)) {
      // v2: the active L1 becomes a copy of the snapshot's (grown to it if larger; qcow2_snapshot_goto),
      // through shadow copies switched by one header sector (shadow-switch.ts). A v2 entry has no
      // disk size: the virtual size stays.
      const activeL1 = new Uint8Array(Math.max(sn.l1Size, this.s.map.l1Size) * 8);
      activeL1.set(snL1.subarray(0, activeL1.length));
      this.shadow({ activeL1, l1Copies: 0, dropped: new Map(), snapshots: () => this.entries });
      return;
    }
    if (sn.l1Size > this.s.map.l1Size) this.s.map.growL1(sn.l1Size);
    // The active tree's references move from the old tree to the snapshot's: clusters both reach
    // keep their refcount (QEMU raises then lowers them, and so refuses a revert whenever a narrow
    // refcount is full: we only check the net change).
    const gained = this.s.map.treeReferences(snL1, sn.l1TableOffset);
    const lost = this.s.map.treeReferences();
    const up = new Map<number, number>();
    const down = new Map<number, number>();
    for (const [c, n] of gained) {
      const net = n - (lost.get(c) ?? 0);
      if (net > 0) up.set(c, net);
    }
    for (const [c, n] of lost) {
      const net = n - (gained.get(c) ?? 0);
      if (net > 0) down.set(c, net);
    }
    for (const [c, n] of up) {
      if (this.s.rc.wouldOverflow(c, n)) throw new RefcountOverflowError(c, this.s.rc.max);
    }
    // v3: under the dirty bit (metadata.ts, beginUnorderedChange).
    const dirty = this.s.meta.beginUnorderedChange();
    // 1. what the snapshot's tree gains, before the active L1 points at it
    this.raiseTree(up);
    // 2. the active L1 becomes a copy of the snapshot's, in place. The copy carries the COPIED
    // flags of the day it was taken, but every cluster it reaches is now shared with the snapshot
    // (qcow2.txt: COPIED "must be 0" unless the refcount is 1): cleared in the same flush, before
    // the L1 (flush step 4) points at them.
    this.s.map.loadL1(snL1);
    this.s.map.updateCopiedFlags(() => false);
    if (this.s.header.version >= 3 && sn.diskSize !== undefined) {
      this.s.header.size = sn.diskSize;
      this.s.meta.markHeaderDirty();
    }
    this.s.meta.flush();
    // 3. what only the old active tree held is released once the new L1 is on disk
    for (const [c, n] of down) this.s.rc.decrement(c, n);
    this.s.meta.flush();
    this.s.map.updateCopiedFlags();
    this.s.meta.endUnorderedChange(dirty);
    this.dp.invalidate();
    this.s.alloc.resetBytes();
  }

  /** qcow2_snapshot_delete: the snapshot's tree and L1 table are freed with QCOW2_DISCARD_SNAPSHOT. */
  delete(idOrName: string): void {
    this.s.rc.freeing('snapshot', () => this.deleteSnapshot(idOrName));
  }

  private deleteSnapshot(idOrName: string): void {
    this.refuseSnapshotsWithDataFile();
    const index = this.snapshotIndex(idOrName);
    const sn = this.entries[index]!;
    this.s.meta.flush();
    const snL1 = readSnapshotL1(this.s.device, sn);
    const cs = this.s.clusterSize;
    if (needsShadowSwitch(this.s)) {
      // v2: the snapshot's tree and L1 table lose their references, the active tree's COPIED flags
      // follow, all through shadow copies switched by one header sector (shadow-switch.ts).
      const dropped = this.s.map.treeReferences(snL1, sn.l1TableOffset);
      for (let c = 0; c < Math.ceil((sn.l1Size * 8) / cs); c++) {
        const at = sn.l1TableOffset / cs + c;
        dropped.set(at, (dropped.get(at) ?? 0) + 1);
      }
      this.shadow({
        activeL1: this.s.map.l1Copy(),
        l1Copies: 0,
        dropped,
        snapshots: () => this.entries.filter((_, i) => i !== index),
      });
      return;
    }
    // v3: under the dirty bit (metadata.ts, beginUnorderedChange).
    const dirty = this.s.meta.beginUnorderedChange();
    // Drop the table entry first: from then on nothing on disk refers to the snapshot's tree.
    this.writeTable(this.entries.filter((_, i) => i !== index));
    try {
      for (const [c, n] of this.s.map.treeReferences(snL1, sn.l1TableOffset)) this.s.rc.decrement(c, n);
    } catch (e) {
      // qcow2_snapshot_delete's words for a failed qcow2_update_snapshot_refcount
      if (!(e instanceof IoError)) throw e;
      throw new IoError(e.code, `Failed to free the cluster and L1 table: ${strerrorOf(e)}`, e.data);
    }
    for (let c = 0; c < Math.ceil((sn.l1Size * 8) / cs); c++) this.s.rc.free(sn.l1TableOffset / cs + c, 1);
    this.s.meta.flush();
    this.s.map.updateCopiedFlags();
    this.s.meta.endUnorderedChange(dirty);
    this.s.alloc.resetBytes();
  }

  /**
   * The guest clusters that hold data in a snapshot (normal and compressed entries; zero and
   * unallocated ones do not): what qemu-img measure -l counts, as block status on the snapshot.
   */
  *dataClusters(idOrName: string): Generator<number> {
    const sn = this.entries[this.snapshotIndex(idOrName)]!;
    const l1 = readSnapshotL1(this.s.device, sn);
    const clusters = Math.ceil((sn.diskSize ?? this.s.size) / this.s.clusterSize);
    for (let gc = 0; gc < clusters; gc++) {
      const t = this.s.map.lookupIn(l1, sn.l1TableOffset, gc).type;
      if (t === ClusterType.Normal || t === ClusterType.Compressed) yield gc;
    }
  }

  read(idOrName: string, offset: number, length: number): Uint8Array {
    const sn = this.entries[this.snapshotIndex(idOrName)]!;
    const size = sn.diskSize ?? this.s.size;
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new ArgumentError(
        'OUT_OF_RANGE',
        `Request out of range: offset ${offset}, length ${length}, snapshot size ${size}`,
        { offset, length, size },
      );
    }
    const l1 = readSnapshotL1(this.s.device, sn);
    const out = new Uint8Array(length);
    const cs = this.s.clusterSize;
    for (let done = 0; done < length;) {
      const pos = offset + done;
      const gc = Math.floor(pos / cs);
      const n = Math.min(cs - (pos - gc * cs), length - done);
      this.dp.readCluster(
        this.s.map.lookupIn(l1, sn.l1TableOffset, gc),
        gc,
        pos - gc * cs,
        out.subarray(done, done + n),
      );
      done += n;
    }
    return out;
  }

  /**
   * qcow2_upgrade (qemu-img amend -o compat=1.1): v3 needs each entry's 64-bit VM state size and
   * disk size in its extra data; entries without them are rewritten (v2 snapshots had the
   * current disk size).
   */
  upgradeTable(): void {
    if (!this.entries.some((e) => e.vmStateSizeLarge === undefined || e.diskSize === undefined)) return;
    // (qcow2_upgrade rewrites the table when any entry's extra data is under 16 bytes)
    this.writeTable(
      this.entries.map((e) => ({
        ...e,
        vmStateSizeLarge: e.vmStateSizeLarge ?? e.vmStateSize,
        diskSize: e.diskSize ?? this.s.size,
        icount: e.icount ?? -1n, // QEMU writes the whole v3 extra data (24 bytes), icount unknown
      })),
    );
  }

  /** The snapshot table rewritten through the metadata writer's crash-safe relocation. */
  private writeTable(entries: SnapshotEntry[]): void {
    const cs = this.s.clusterSize;
    const h = this.s.header;
    const bytes = encodeSnapshotTable(entries, h.version);
    const old =
      h.nbSnapshots > 0
        ? { offset: h.snapshotsOffset, clusters: Math.ceil(snapshotTableSize(this.entries) / cs) }
        : undefined;
    this.s.meta.relocate(bytes, old, (hd, next) => {
      hd.nbSnapshots = entries.length;
      hd.snapshotsOffset = next.offset;
    });
    this.entries = entries;
    this.s.meta.snapshotTableBytes = bytes.length;
  }
}

/** The C string QEMU keeps of a stored id or name: up to its first NUL byte. */
function cString(s: string): string {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}
