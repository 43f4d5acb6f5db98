/**
 * Where a qcow2 image's structures lie, read from a valid image before it is damaged: the header
 * fields (offsets of qcow2.txt's "Header" section), the L1 and L2 tables, the refcount table and
 * blocks, the snapshot table and the header extensions. Mutations aim at these places.
 */
import { decodeHeader, type Header } from '../../src/format/header.ts';
import { readL1, readRefTable, readL2, ClusterType } from '../../src/format/tables.ts';
import { decodeSnapshotTable, snapshotEntrySize, type SnapshotEntry } from '../../src/format/snapshot.ts';
import { u32 } from '../../src/format/bytes.ts';

/** A header field: byte offset and width (qcow2.txt, "Header"). */
export interface HeaderField {
  name: string;
  offset: number;
  width: 4 | 8;
  /** Only in version 3 headers. */
  v3?: boolean;
}

export const HEADER_FIELDS: readonly HeaderField[] = [
  { name: 'magic', offset: 0, width: 4 },
  { name: 'version', offset: 4, width: 4 },
  { name: 'backing_file_offset', offset: 8, width: 8 },
  { name: 'backing_file_size', offset: 16, width: 4 },
  { name: 'cluster_bits', offset: 20, width: 4 },
  { name: 'size', offset: 24, width: 8 },
  { name: 'crypt_method', offset: 32, width: 4 },
  { name: 'l1_size', offset: 36, width: 4 },
  { name: 'l1_table_offset', offset: 40, width: 8 },
  { name: 'refcount_table_offset', offset: 48, width: 8 },
  { name: 'refcount_table_clusters', offset: 56, width: 4 },
  { name: 'nb_snapshots', offset: 60, width: 4 },
  { name: 'snapshots_offset', offset: 64, width: 8 },
  { name: 'incompatible_features', offset: 72, width: 8, v3: true },
  { name: 'compatible_features', offset: 80, width: 8, v3: true },
  { name: 'autoclear_features', offset: 88, width: 8, v3: true },
  { name: 'refcount_order', offset: 96, width: 4, v3: true },
  { name: 'header_length', offset: 100, width: 4, v3: true },
];

export interface SnapshotPlace {
  /** Byte offset of the entry in the file. */
  at: number;
  entry: SnapshotEntry;
}

export interface ExtensionPlace {
  type: number;
  /** Byte offset of the extension's type field. */
  at: number;
  length: number;
}

export interface ImageMap {
  header: Header;
  clusterSize: number;
  fileSize: number;
  /** L1 entries in use (non-zero) and their L2 table offsets. */
  l1Entries: { index: number; l2Offset: number }[];
  l2Tables: number[];
  /** Host offsets of L2 entries, by kind of cluster they map. */
  l2Entries: { at: number; kind: 'normal' | 'compressed' | 'zero' }[];
  refBlocks: { index: number; offset: number }[];
  snapshots: SnapshotPlace[];
  extensions: ExtensionPlace[];
  /** Host offsets of data clusters referenced by the active L2 tables (not compressed). */
  dataClusters: number[];
}

function extensionPlaces(b: Uint8Array, h: Header): ExtensionPlace[] {
  const out: ExtensionPlace[] = [];
  // Extensions start right after the header (header_length in v3, 72 in v2), 8-byte aligned.
  let at = h.version === 3 ? h.headerLength : 72;
  const end = h.backingFileOffset > 0 ? h.backingFileOffset : 1 << h.clusterBits;
  while (at + 8 <= end) {
    const type = u32(b, at);
    const length = u32(b, at + 4);
    if (type === 0) break;
    out.push({ type, at, length });
    at += 8 + Math.ceil(length / 8) * 8;
  }
  return out;
}

export function mapImage(b: Uint8Array): ImageMap {
  const header = decodeHeader(b);
  const cs = 1 << header.clusterBits;
  const extendedL2 = (header.incompatibleFeatures & (1n << 4n)) !== 0n;
  const l2EntrySize = extendedL2 ? 16 : 8;
  const l1 = b.subarray(header.l1TableOffset, header.l1TableOffset + header.l1Size * 8);
  const l1Entries: ImageMap['l1Entries'] = [];
  for (let i = 0; i < header.l1Size; i++) {
    const e = readL1(l1, i);
    if (e.l2Offset !== 0) l1Entries.push({ index: i, l2Offset: e.l2Offset });
  }
  const l2Tables = [...new Set(l1Entries.map((e) => e.l2Offset))];
  const l2Entries: ImageMap['l2Entries'] = [];
  const dataClusters: number[] = [];
  for (const t of l2Tables) {
    const table = b.subarray(t, t + cs);
    for (let i = 0; i < cs / l2EntrySize; i++) {
      const e = readL2(table, i, header.clusterBits, extendedL2);
      const type = e.type;
      const at = t + i * l2EntrySize;
      if (type === ClusterType.Compressed) l2Entries.push({ at, kind: 'compressed' });
      else if (type === ClusterType.ZeroPlain || type === ClusterType.ZeroAlloc)
        l2Entries.push({ at, kind: 'zero' });
      else if (type === ClusterType.Normal) {
        l2Entries.push({ at, kind: 'normal' });
        dataClusters.push(e.hostOffset);
      }
    }
  }
  const refTable = b.subarray(
    header.refcountTableOffset,
    header.refcountTableOffset + header.refcountTableClusters * cs,
  );
  const refBlocks: ImageMap['refBlocks'] = [];
  for (let i = 0; i < refTable.length / 8; i++) {
    const o = readRefTable(refTable, i);
    if (o !== 0) refBlocks.push({ index: i, offset: o });
  }
  const snapshots: SnapshotPlace[] = [];
  if (header.nbSnapshots > 0) {
    const entries = decodeSnapshotTable(
      b.subarray(header.snapshotsOffset),
      header.nbSnapshots,
      header.version,
    );
    let at = header.snapshotsOffset;
    for (const entry of entries) {
      snapshots.push({ at, entry });
      at += snapshotEntrySize(entry);
    }
  }
  return {
    header,
    clusterSize: cs,
    fileSize: b.length,
    l1Entries,
    l2Tables,
    l2Entries,
    refBlocks,
    snapshots,
    extensions: extensionPlaces(b, header),
    dataClusters,
  };
}
