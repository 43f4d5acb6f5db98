/**
 * Who owns each host cluster of an image: the walk behind `qcow2 diagnose`. Where the checker
 * only counts references, this records every owner (the header, an L1 or L2 table, a refcount
 * structure, the snapshot table, the data of a guest range, compressed bytes, bitmap structures)
 * with the table entry that points at it, so a finding can say which entries share a cluster and
 * which guest ranges read through it. It reads only metadata and never writes. Every table read
 * is bounded by the file's size, so a hostile header cannot make it allocate without limit.
 */
import type { BlockDevice } from '../io/device.ts';
import {
  bitmapsExtension,
  cryptoHeaderPointer,
  dataFileName,
  decodeHeader,
  type Header,
} from '../format/header.ts';
import { ClusterType, getRefcount, readL1, readL2, readRefTable, refblockEntries } from '../format/tables.ts';
import { decodeSnapshotTable, snapshotTableSize, type SnapshotEntry } from '../format/snapshot.ts';
import { decodeBitmapDirectory, decodeBitmapTableEntry } from '../format/bitmaps.ts';
import * as C from '../format/constants.ts';
import { isQcow2Error } from '../errors.ts';
import { u32 } from '../format/bytes.ts';

export type OwnerKind =
  | 'header'
  | 'l1'
  | 'l2'
  | 'reftable'
  | 'refblock'
  | 'snapshot-table'
  | 'snapshot-l1'
  | 'data'
  | 'compressed'
  | 'crypto-header'
  | 'bitmap-directory'
  | 'bitmap-table'
  | 'bitmap-data';

/** A guest byte range, in the active disk or in a snapshot. */
export interface GuestRange {
  offset: number;
  length: number;
  /** Snapshot name; undefined for the active disk. */
  snapshot?: string;
}

/** The table entry that points at a cluster. */
export interface PointedFrom {
  table: 'L1' | 'L2' | 'refcount table' | 'snapshot table' | 'bitmap directory' | 'bitmap table' | 'header';
  /** Host offset of the table and index of the entry. */
  tableOffset: number;
  index: number;
  /** Host offset of the entry itself. */
  entryOffset: number;
}

export interface Owner {
  kind: OwnerKind;
  /** Words for a person: "L2 table for guest 0x0..0x1fffffff". */
  label: string;
  guest?: GuestRange;
  from?: PointedFrom;
  /** Compressed data: the byte range it covers in the host file. */
  bytes?: { start: number; end: number };
  /** L2 data entries: the COPIED flag (bit 63). */
  copied?: boolean;
  /** Preallocated zero cluster (zero flag with an offset). */
  zero?: boolean;
}

/** A problem met while walking (unaligned entry, reserved bits, unreadable table). */
export interface WalkProblem {
  code: string;
  message: string;
  hostOffset?: number;
  from?: PointedFrom;
}

export interface OwnershipMap {
  header: Header | undefined;
  /** Why the header could not be read, when it could not. */
  headerError?: string;
  clusterSize: number;
  fileSize: number;
  /** Number of clusters the file spans (rounded up). */
  fileClusters: number;
  /** Owners by host cluster index (sparse). */
  owners: Map<number, Owner[]>;
  /** Stored refcount by host cluster index (clusters with a refcount block; absent = no block). */
  refcounts: Map<number, number>;
  /** Refcount blocks present, so a cluster without one can be told from refcount 0. */
  coveredByRefblock: (cluster: number) => boolean;
  problems: WalkProblem[];
  snapshots: SnapshotEntry[];
  /** Data clusters live in an external data file (their owners are not recorded). */
  externalData: boolean;
}

const hex = (v: number): string => `0x${v.toString(16)}`;

/** Reads at most what the file holds: bytes past its end read as zeros, and at most `cap` bytes. */
function readBounded(dev: BlockDevice, offset: number, length: number, fileSize: number): Uint8Array {
  const len = Math.max(0, Math.min(length, fileSize - offset, 64 * 1024 * 1024));
  const buf = new Uint8Array(Math.max(0, len));
  if (len > 0) dev.read(buf, offset);
  return buf;
}

export function walkOwnership(dev: BlockDevice): OwnershipMap {
  const fileSize = dev.size();
  const first = readBounded(dev, 0, 2 * 1024 * 1024, fileSize);
  let header: Header | undefined;
  let headerError: string | undefined;
  try {
    header = decodeHeader(first);
  } catch (e) {
    if (!isQcow2Error(e)) throw e;
    headerError = e.message;
  }
  const clusterSize = header ? 2 ** header.clusterBits : 65536;
  const fileClusters = Math.ceil(fileSize / clusterSize);
  const owners = new Map<number, Owner[]>();
  const refcounts = new Map<number, number>();
  const problems: WalkProblem[] = [];
  const map: OwnershipMap = {
    header,
    headerError,
    clusterSize,
    fileSize,
    fileClusters,
    owners,
    refcounts,
    coveredByRefblock: () => false,
    problems,
    snapshots: [],
    externalData: false,
  };
  if (!header) return map;
  const h = header;
  const cs = clusterSize;
  const cluster = (off: number): number => Math.floor(off / cs);
  const own = (hostOffset: number, length: number, o: Owner): void => {
    const firstC = cluster(hostOffset);
    const lastC = cluster(hostOffset + Math.max(1, length) - 1);
    // A table claimed to be huge is bounded by what the file (plus a little) could hold.
    for (let c = firstC; c <= Math.min(lastC, firstC + fileClusters + 16); c++) {
      const list = owners.get(c);
      if (list) list.push(o);
      else owners.set(c, [o]);
    }
  };
  own(0, cs, { kind: 'header', label: 'image header' });
  const crypto = cryptoHeaderPointer(h);
  if (crypto) own(crypto.offset, crypto.length, { kind: 'crypto-header', label: 'encryption (LUKS) header' });
  map.externalData = dataFileName(h) !== undefined;

  // ---- refcount table and blocks (qcow2.txt "Host cluster management")
  const order = h.refcountOrder;
  const perBlock = refblockEntries(h.clusterBits, order);
  const reftableBytes = readBounded(dev, h.refcountTableOffset, h.refcountTableClusters * cs, fileSize);
  own(h.refcountTableOffset, h.refcountTableClusters * cs, { kind: 'reftable', label: 'refcount table' });
  const blocks = new Set<number>();
  for (let i = 0; i < Math.floor(reftableBytes.length / 8); i++) {
    const raw = readRefTable(reftableBytes, i);
    const reserved = (u32(reftableBytes, i * 8 + 4) & C.REFT_RESERVED_LO) !== 0;
    if (raw === 0 && !reserved) continue;
    const from: PointedFrom = {
      table: 'refcount table',
      tableOffset: h.refcountTableOffset,
      index: i,
      entryOffset: h.refcountTableOffset + i * 8,
    };
    if (reserved)
      problems.push({
        code: 'REFTABLE_RESERVED',
        message: `refcount table entry ${i} has reserved bits set`,
        from,
      });
    if (raw === 0) continue;
    if (raw % cs !== 0) {
      problems.push({
        code: 'REFBLOCK_UNALIGNED',
        message: `refcount table entry ${i} holds the unaligned offset ${hex(raw)}`,
        hostOffset: raw,
        from,
      });
      continue;
    }
    blocks.add(i);
    own(raw, cs, {
      kind: 'refblock',
      label: `refcount block ${i} (refcounts of host clusters ${i * perBlock}..${(i + 1) * perBlock - 1})`,
      from,
    });
    if (raw >= fileSize) continue;
    const block = readBounded(dev, raw, cs, fileSize);
    for (let j = 0; j < perBlock; j++) {
      const c = i * perBlock + j;
      if (c >= fileClusters + 16) break;
      const v = (j * 2 ** order) / 8 < block.length ? getRefcount(block, j, order) : 0;
      if (v !== 0 || c < fileClusters) refcounts.set(c, v);
    }
  }
  map.coveredByRefblock = (c) => blocks.has(Math.floor(c / perBlock));

  // ---- L1 / L2 (active and snapshots)
  const extendedL2 = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
  const l2EntrySize = extendedL2 ? C.L2E_SIZE_EXTENDED : C.L2E_SIZE_NORMAL;
  const l2Entries = cs / l2EntrySize;
  const l2Coverage = l2Entries * cs;
  const walkL1 = (
    l1Offset: number,
    l1Size: number,
    snapshot: string | undefined,
    kind: 'l1' | 'snapshot-l1',
  ): void => {
    const where = snapshot === undefined ? 'active' : `snapshot '${snapshot}'`;
    own(l1Offset, l1Size * 8, { kind, label: `L1 table (${where})` });
    if (l1Offset % cs !== 0) {
      problems.push({
        code: 'L1_UNALIGNED',
        message: `the ${where} L1 table offset ${hex(l1Offset)} is unaligned`,
        hostOffset: l1Offset,
      });
      return;
    }
    const l1 = readBounded(dev, l1Offset, l1Size * 8, fileSize);
    for (let i = 0; i < Math.floor(l1.length / 8); i++) {
      const e = readL1(l1, i);
      // QEMU walks every non-zero L1 entry: one with flags but offset 0 names cluster 0 as its L2 table.
      if (e.l2Offset === 0 && !e.reserved && !e.copied) continue;
      const from: PointedFrom = {
        table: 'L1',
        tableOffset: l1Offset,
        index: i,
        entryOffset: l1Offset + i * 8,
      };
      const guestStart = i * l2Coverage;
      if (e.reserved)
        problems.push({ code: 'L1_RESERVED', message: `${where} L1 entry ${i} has reserved bits set`, from });
      if (e.l2Offset % cs !== 0) {
        problems.push({
          code: 'L2_UNALIGNED',
          message: `${where} L1 entry ${i} points at the unaligned L2 table offset ${hex(e.l2Offset)}`,
          hostOffset: e.l2Offset,
          from,
        });
        continue;
      }
      own(e.l2Offset, cs, {
        kind: 'l2',
        label: `L2 table for guest ${hex(guestStart)}..${hex(guestStart + l2Coverage - 1)} (${where})`,
        guest: { offset: guestStart, length: l2Coverage, snapshot },
        from,
        copied: e.copied,
      });
      // A table shared with a snapshot is walked once per L1 that points at it: each walk is a
      // reference to its data clusters, as QEMU counts them (check_refcounts_l1/l2).
      if (e.l2Offset >= fileSize) continue;
      const table = readBounded(dev, e.l2Offset, cs, fileSize);
      for (let j = 0; j < l2Entries; j++) {
        if ((j + 1) * l2EntrySize > table.length) break;
        const l2 = readL2(table, j, h.clusterBits, extendedL2, map.externalData);
        const guest: GuestRange = { offset: guestStart + j * cs, length: cs, snapshot };
        const efrom: PointedFrom = {
          table: 'L2',
          tableOffset: e.l2Offset,
          index: j,
          entryOffset: e.l2Offset + j * l2EntrySize,
        };
        const g = `guest ${hex(guest.offset)}..${hex(guest.offset + cs - 1)}${snapshot === undefined ? '' : ` (snapshot '${snapshot}')`}`;
        if (l2.reserved && l2.type !== ClusterType.Compressed)
          problems.push({
            code: 'L2_RESERVED',
            message: `L2 entry for ${g} has reserved bits set`,
            from: efrom,
          });
        if (l2.type === ClusterType.Compressed) {
          if (l2.copied)
            problems.push({
              code: 'COMPRESSED_COPIED',
              message: `compressed L2 entry for ${g} has COPIED set`,
              from: efrom,
            });
          own(l2.hostOffset, l2.compressedLength, {
            kind: 'compressed',
            label: `compressed data of ${g}`,
            guest,
            from: efrom,
            bytes: { start: l2.hostOffset, end: l2.hostOffset + l2.compressedLength },
          });
        } else if (l2.type === ClusterType.Normal || l2.type === ClusterType.ZeroAlloc) {
          if (map.externalData) continue;
          if (l2.hostOffset % cs !== 0) {
            problems.push({
              code: 'DATA_UNALIGNED',
              message: `L2 entry for ${g} points at the unaligned offset ${hex(l2.hostOffset)}`,
              hostOffset: l2.hostOffset,
              from: efrom,
            });
            continue;
          }
          own(l2.hostOffset, cs, {
            kind: 'data',
            label: `${l2.type === ClusterType.ZeroAlloc ? 'preallocated zero cluster' : 'data'} of ${g}`,
            guest,
            from: efrom,
            copied: l2.copied,
            zero: l2.type === ClusterType.ZeroAlloc,
          });
        }
      }
    }
  };
  walkL1(h.l1TableOffset, Math.min(h.l1Size, Math.ceil(fileSize / 8)), undefined, 'l1');

  // ---- snapshot table
  if (h.nbSnapshots > 0) {
    try {
      const bytes = readBounded(dev, h.snapshotsOffset, fileSize, fileSize);
      const entries = decodeSnapshotTable(bytes, Math.min(h.nbSnapshots, C.QCOW_MAX_SNAPSHOTS), h.version, {
        tableOffset: h.snapshotsOffset,
      });
      map.snapshots = entries;
      own(h.snapshotsOffset, snapshotTableSize(entries), { kind: 'snapshot-table', label: 'snapshot table' });
      for (const s of entries)
        walkL1(s.l1TableOffset, Math.min(s.l1Size, Math.ceil(fileSize / 8)), s.name, 'snapshot-l1');
    } catch (e) {
      if (!isQcow2Error(e)) throw e;
      problems.push({
        code: 'SNAPSHOT_TABLE',
        message: `the snapshot table cannot be read: ${e.message}`,
        hostOffset: h.snapshotsOffset,
      });
    }
  }

  // ---- bitmaps (qcow2.txt "Bitmaps extension")
  const bm = bitmapsExtension(h);
  if (bm && bm.nbBitmaps > 0) {
    try {
      const dir = readBounded(dev, bm.bitmapDirectoryOffset, bm.bitmapDirectorySize, fileSize);
      own(bm.bitmapDirectoryOffset, bm.bitmapDirectorySize, {
        kind: 'bitmap-directory',
        label: 'bitmap directory',
      });
      for (const b of decodeBitmapDirectory(dir, bm.nbBitmaps, {
        directoryOffset: bm.bitmapDirectoryOffset,
      })) {
        own(b.bitmapTableOffset, b.bitmapTableSize * 8, {
          kind: 'bitmap-table',
          label: `bitmap table of '${b.name}'`,
        });
        const table = readBounded(dev, b.bitmapTableOffset, b.bitmapTableSize * 8, fileSize);
        for (let i = 0; i < Math.floor(table.length / 8); i++) {
          const entry = decodeBitmapTableEntry(table, i * 8, { hostOffset: b.bitmapTableOffset + i * 8 });
          if (entry.kind === 'data')
            own(entry.offset, cs, {
              kind: 'bitmap-data',
              label: `bitmap data of '${b.name}' (table entry ${i})`,
              from: {
                table: 'bitmap table',
                tableOffset: b.bitmapTableOffset,
                index: i,
                entryOffset: b.bitmapTableOffset + i * 8,
              },
            });
        }
      }
    } catch (e) {
      if (!isQcow2Error(e)) throw e;
      problems.push({
        code: 'BITMAPS',
        message: `the bitmaps cannot be read: ${e.message}`,
        hostOffset: bm.bitmapDirectoryOffset,
      });
    }
  }
  return map;
}
