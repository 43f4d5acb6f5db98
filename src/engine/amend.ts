/**
 * qemu-img amend for qcow2 images, with QEMU 7.2's rules and order (qcow2_amend_options):
 * upgrade to v3 first (features may need it), then the refcount width, the data-file options,
 * the backing-file check, lazy refcounts, the size, and the downgrade to v2 last (so that what v2
 * cannot hold is removed before). Every refusal uses QEMU's words.
 *
 *   compat=1.1      v3 header (112 bytes, feature name table when clusters > 4 KiB); snapshot
 *                   entries get the v3 extra data (64-bit VM state size, disk size)
 *   compat=0.10     refused with a data file, refcount_bits ≠ 16, other incompatible features,
 *                   snapshots of another size, zstd with compressed clusters; zero clusters of
 *                   every tree become data clusters of zeros (or unallocated without a backing
 *                   file: qcow2_expand_zero_clusters); compatible and autoclear bits cleared
 *   refcount_bits   new refcount table and blocks of the new width (qcow2_change_refcount_order)
 *   lazy_refcounts  compatible bit 0; switching it off makes the image clean first
 *   size            an exact resize (shrinking included)
 *
 * It does not touch tables itself beyond zero expansion and the refcount rewrite: guest data goes
 * through the data path, resizes through the facade, header writes through the metadata writer.
 */
import { replayRefcountOrderWalks } from './refcount-order-walks.ts';
import { ArgumentError, UnsupportedError } from '../errors.ts';
import * as C from '../format/constants.ts';
import {
  backingFormat,
  encodeFeatureTable,
  QEMU_FEATURE_NAMES,
  setExtension,
  type Header,
} from '../format/header.ts';
import { textEncoder } from '../format/bytes.ts';
import {
  ClusterType,
  maxRefcount,
  readL1,
  readL2,
  refblockEntries,
  setRefcount,
  writeL2,
  writeRefTable,
} from '../format/tables.ts';
import type { SnapshotInfo } from '../api.ts';
import type { DataPath } from './data-path.ts';
import type { ImageState } from './state.ts';

/** The options `qemu-img amend -o` takes for qcow2 (qcow2_amend_opts). Unset = unchanged. */
export interface AmendOptions {
  compat?: string;
  size?: number;
  backingFile?: string;
  backingFormat?: string;
  lazyRefcounts?: boolean;
  refcountBits?: number;
  /** '' drops the name (QEMU: an empty data_file clears image_data_file). */
  dataFile?: string;
  dataFileRaw?: boolean;
  /** Any `encrypt.*` option was given. */
  encrypt?: boolean;
}

/** What amend needs from the rest of the engine (the facade passes its parts). */
export interface AmendParts {
  s: ImageState;
  dp: DataPath;
  snapshots(): SnapshotInfo[];
  /** qcow2_upgrade: rewrite the snapshot table with v3 extra data. */
  upgradeSnapshotTable(): void;
  resize(size: number): void;
  /** Progress of the whole amend, 0..1 (qemu-img amend -p; QEMU's qcow2_amend_helper_cb). */
  progress?(fraction: number): void;
}

export function amendImage(p: AmendParts, o: AmendOptions): void {
  const { s } = p;
  const h = s.header;
  const oldVersion = h.version;
  let newVersion = oldVersion;
  if (o.compat !== undefined) {
    if (o.compat === '0.10' || o.compat === 'v2') newVersion = 2;
    else if (o.compat === '1.1' || o.compat === 'v3') newVersion = 3;
    else
      throw new ArgumentError('INVALID_OPTION', `Unknown compatibility level ${o.compat}`, {
        compat: o.compat,
      });
  }
  if (o.encrypt) {
    if (h.cryptMethod === C.QCOW_CRYPT_NONE)
      throw new ArgumentError(
        'INVALID_OPTION',
        "Can't amend encryption options - encryption not present",
        {},
      );
    if (h.cryptMethod !== C.QCOW_CRYPT_LUKS)
      throw new UnsupportedError('UNSUPPORTED', 'Only LUKS encryption options can be amended', {});
    throw new UnsupportedError('UNSUPPORTED', 'Amending LUKS key slots is not supported by this engine', {});
  }
  const oldBits = 2 ** h.refcountOrder;
  const bits = o.refcountBits ?? oldBits;
  if (!(bits > 0 && bits <= 64 && Number.isInteger(Math.log2(bits)))) {
    throw new ArgumentError(
      'BAD_REFCOUNT_BITS',
      'Refcount width must be a power of two and may not exceed 64 bits',
      {
        refcountBits: bits,
      },
    );
  }
  const hasDataFile = (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n;
  const isRaw = (h.autoclearFeatures & C.AUTOCLEAR_DATA_FILE_RAW) !== 0n;
  if (o.dataFile !== undefined && !hasDataFile) {
    throw new ArgumentError(
      'INVALID_OPTION',
      'data-file can only be set for images that use an external data file',
      {},
    );
  }
  if (o.dataFileRaw === true && !isRaw)
    throw new ArgumentError('INVALID_OPTION', 'data-file-raw cannot be set on existing images', {});

  if (newVersion > oldVersion) upgrade(p);

  if (bits !== oldBits) {
    if (newVersion < 3 && bits !== 16) {
      throw new ArgumentError(
        'BAD_REFCOUNT_BITS',
        'Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)',
        { refcountBits: bits },
      );
    }
    // Progress as QEMU's walks report it (refcount-order-walks.ts), as the first of the operations
    // QEMU counts (qcow2_amend_helper_cb projects the rest from it).
    const ops = (newVersion !== oldVersion ? 1 : 0) + 1;
    const status = p.progress ? (off: number, work: number) => p.progress!(off / work / ops) : undefined;
    changeRefcountOrder(s, Math.log2(bits), status);
  }

  // data_file_raw, then the data file name, then one header update (as QEMU orders them).
  const raw = o.dataFileRaw ?? isRaw;
  s.meta.updateHeaderNow((hd) => {
    if (raw) hd.autoclearFeatures |= C.AUTOCLEAR_DATA_FILE_RAW;
    else hd.autoclearFeatures &= ~C.AUTOCLEAR_DATA_FILE_RAW;
    if (o.dataFile !== undefined)
      setExtension(hd, C.EXT_DATA_FILE, o.dataFile === '' ? undefined : textEncoder.encode(o.dataFile));
    orderExtensions(hd);
  });

  if (o.backingFile !== undefined || o.backingFormat !== undefined) {
    if (o.backingFile !== h.backingFile || o.backingFormat !== backingFormat(h)) {
      throw new UnsupportedError(
        'UNSUPPORTED',
        "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.",
        {},
      );
    }
  }

  const lazy = (h.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n;
  if (o.lazyRefcounts !== undefined && o.lazyRefcounts !== lazy) {
    if (o.lazyRefcounts) {
      if (newVersion < 3) {
        throw new ArgumentError(
          'INVALID_OPTION',
          'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
          {},
        );
      }
      s.meta.updateHeaderNow((hd) => {
        hd.compatibleFeatures |= C.COMPAT_LAZY_REFCOUNTS;
      });
    } else {
      // Make the image clean first, then disallow lazy refcounts.
      s.meta.flush();
      s.meta.markClean();
      s.meta.updateHeaderNow((hd) => {
        hd.compatibleFeatures &= ~C.COMPAT_LAZY_REFCOUNTS;
      });
    }
  }

  if (o.size) p.resize(o.size);

  if (newVersion < oldVersion) {
    // Operations QEMU counts for progress: a version change and a refcount width change.
    const ops = 1 + (bits !== oldBits ? 1 : 0);
    const before = ops - 1;
    downgrade(p, (done, total) => p.progress?.((before + (total ? done / total : 1)) / ops));
  }
  s.meta.flush();
}

// ---------------------------------------------------------------- compat

/** QEMU's order of header extensions (qcow2_update_header); unknown ones keep theirs, last. */
const EXTENSION_ORDER = [
  C.EXT_BACKING_FORMAT,
  C.EXT_DATA_FILE,
  C.EXT_CRYPTO_HEADER,
  C.EXT_FEATURE_TABLE,
  C.EXT_BITMAPS,
];

function orderExtensions(h: Header): void {
  const rank = (t: number): number => {
    const i = EXTENSION_ORDER.indexOf(t);
    return i < 0 ? EXTENSION_ORDER.length : i;
  };
  h.extensions = [...h.extensions].sort((a, b) => rank(a.type) - rank(b.type));
}

function upgrade(p: AmendParts): void {
  const { s } = p;
  const cs = s.clusterSize;
  s.meta.flush();
  const h = s.header;
  h.version = 3;
  h.headerLength = C.HEADER_V3_QEMU_LENGTH;
  h.extraHeaderBytes = new Uint8Array(C.HEADER_V3_QEMU_LENGTH - 105);
  h.refcountOrder = C.DEFAULT_REFCOUNT_ORDER;
  h.compressionType = C.COMPRESSION_ZLIB;
  // The feature name table: only with clusters over 4 KiB (room for a backing file name).
  if (cs > 4096) setExtension(h, C.EXT_FEATURE_TABLE, encodeFeatureTable(QEMU_FEATURE_NAMES));
  orderExtensions(h);
  // v3 needs each snapshot's 64-bit VM state size and disk size in its extra data; the table
  // rewrite switches the header (now v3) to the new table.
  p.upgradeSnapshotTable();
  s.meta.updateHeaderNow(() => undefined);
}

function downgrade(p: AmendParts, status: (done: number, total: number) => void): void {
  const { s } = p;
  const h = s.header;
  if (h.refcountOrder !== C.DEFAULT_REFCOUNT_ORDER)
    throw new UnsupportedError('UNSUPPORTED', 'compat=0.10 requires refcount_bits=16', {});
  if ((h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n)
    throw new UnsupportedError('UNSUPPORTED', 'Cannot downgrade an image with a data file', {});
  // Snapshots of another size, or with a VM state size over 32 bits, need v3's extra data.
  for (const sn of p.snapshots()) {
    if (sn.vmStateSize > 0xffffffff || (sn.diskSize ?? s.size) !== s.size)
      throw new UnsupportedError('UNSUPPORTED', 'Internal snapshots prevent downgrade of image', {});
  }
  if ((h.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n) {
    s.meta.flush();
    s.meta.markClean();
  }
  const others = h.incompatibleFeatures & ~C.INCOMPAT_COMPRESSION;
  if (others !== 0n) {
    throw new UnsupportedError(
      'UNSUPPORTED',
      `Cannot downgrade an image with incompatible features 0x${others.toString(16)} set`,
      { incompatibleFeatures: Number(others) },
    );
  }
  s.meta.flush();
  expandZeroClusters(p, status);
  if ((h.incompatibleFeatures & C.INCOMPAT_COMPRESSION) !== 0n) {
    if (hasCompressedClusters(p)) {
      throw new UnsupportedError(
        'UNSUPPORTED',
        'Cannot downgrade an image with zstd compression type and existing compressed clusters',
        {},
      );
    }
  }
  s.meta.updateHeaderNow((hd) => {
    hd.compatibleFeatures = 0n;
    hd.autoclearFeatures = 0n;
    hd.incompatibleFeatures = 0n;
    hd.compressionType = C.COMPRESSION_ZLIB;
    hd.version = 2;
    hd.headerLength = C.HEADER_V2_LENGTH;
    hd.extraHeaderBytes = new Uint8Array(0);
    setExtension(hd, C.EXT_FEATURE_TABLE, undefined); // v2 headers carry no feature name table
    orderExtensions(hd);
  });
}

/** Each snapshot's L1 table, read from disk. */
function* l1Trees(p: AmendParts): Generator<{ l1: Uint8Array; l1Offset: number }> {
  const { s } = p;
  for (const sn of p.snapshots()) {
    const l1 = new Uint8Array(sn.l1Size * 8);
    if (sn.l1Size > 0) s.device.read(l1, sn.l1TableOffset);
    yield { l1, l1Offset: sn.l1TableOffset };
  }
}

/**
 * qcow2_expand_zero_clusters: v2 has no zero flag. Zero clusters without a host cluster become
 * unallocated (no backing file) or a fresh cluster of zeros (with one); preallocated zero
 * clusters get zeros written into their host cluster. The active tree first, then each
 * snapshot's tables, written in place (refcounts of new clusters follow their L2 table's).
 */
function expandZeroClusters(p: AmendParts, status: (done: number, total: number) => void): void {
  const { s, dp } = p;
  const map = s.map;
  const cs = s.clusterSize;
  const zeros = new Uint8Array(cs);
  // Progress counts L1 entries visited, of the active table and every snapshot's.
  const total = map.l1Size + p.snapshots().reduce((n, sn) => n + sn.l1Size, 0);
  let visited = 0;
  for (let i = 0; i < map.l1Size; i++) {
    if (i > 0) status(++visited, total);
    if (map.l2OffsetAt(i) === 0) continue;
    for (let j = 0; j < map.l2Entries; j++) {
      const c = i * map.l2Entries + j;
      const e = map.lookup(c);
      if (e.type === ClusterType.ZeroPlain) {
        if (!s.backing) {
          dp.setEntry(c, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
          continue;
        }
        const host = dp.allocData(c);
        dp.writeData(zeros, host, c * cs);
        dp.setEntry(c, { type: ClusterType.Normal, hostOffset: host, copied: true });
      } else if (e.type === ClusterType.ZeroAlloc) {
        dp.writeData(zeros, e.hostOffset, c * cs);
        dp.setEntry(c, {
          type: ClusterType.Normal,
          hostOffset: e.hostOffset,
          copied: s.rc.get(e.hostOffset / cs) === 1,
        });
      }
    }
  }
  if (map.l1Size > 0) status(++visited, total);
  s.meta.flush();
  const done = new Set<number>();
  for (const { l1 } of l1Trees(p)) {
    for (let i = 0; i < l1.length / 8; i++) {
      if (i > 0) status(++visited, total);
      const l2Offset = readL1(l1, i).l2Offset;
      if (l2Offset === 0 || done.has(l2Offset)) continue;
      done.add(l2Offset);
      const table = new Uint8Array(cs);
      s.device.read(table, l2Offset);
      const l2Refcount = s.rc.get(l2Offset / cs);
      let dirty = false;
      for (let j = 0; j < map.l2Entries; j++) {
        const e = readL2(table, j, s.clusterBits, false, false);
        if (e.type !== ClusterType.ZeroPlain && e.type !== ClusterType.ZeroAlloc) continue;
        let host = e.hostOffset;
        if (e.type === ClusterType.ZeroPlain) {
          if (!s.backing) {
            writeL2(table, j, s.clusterBits, false, {
              type: ClusterType.Unallocated,
              hostOffset: 0,
              copied: false,
            });
            dirty = true;
            continue;
          }
          host = s.alloc.alloc(1);
          // Every tree sharing this L2 table holds a reference to the new cluster.
          if (l2Refcount > 1) s.rc.increment(host / cs, l2Refcount - 1);
        }
        dp.writeData(zeros, host, (i * map.l2Entries + j) * cs);
        writeL2(table, j, s.clusterBits, false, {
          type: ClusterType.Normal,
          hostOffset: host,
          copied: l2Refcount === 1,
        });
        dirty = true;
      }
      if (dirty) {
        s.meta.flush(); // the new clusters' refcounts before the table that uses them
        s.device.write(table, l2Offset);
        map.forgetTable(l2Offset);
      }
    }
    if (l1.length > 0) status(++visited, total);
  }
  s.meta.flush();
}

function hasCompressedClusters(p: AmendParts): boolean {
  const { s } = p;
  const map = s.map;
  const trees = [{ l1: map.l1Copy(), l1Offset: s.header.l1TableOffset }, ...l1Trees(p)];
  for (const { l1, l1Offset } of trees) {
    for (let i = 0; i < l1.length / 8; i++) {
      if (map.l2OffsetAt(i, l1, l1Offset) === 0) continue;
      for (let j = 0; j < map.l2Entries; j++) {
        if (map.lookupIn(l1, l1Offset, i * map.l2Entries + j).type === ClusterType.Compressed) return true;
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------- refcount width

/**
 * qcow2_change_refcount_order: the same refcounts in a new table and new blocks of the new
 * width. Built past the end of the file, describing the image as it will be after the switch
 * (the old table and blocks already free, the new ones counted once), written and flushed, then
 * the header switches to them in one write: a crash on either side leaves a consistent image.
 */
function changeRefcountOrder(
  s: ImageState,
  order: number,
  status?: (offset: number, work: number) => void,
): void {
  const meta = s.meta;
  meta.flush();
  // (under the dirty bit a flush leaves refcount blocks cached: the switch needs them on disk)
  meta.lazy.writeRefcounts();
  const cs = s.clusterSize;
  const rc = s.rc;
  if (status) {
    replayRefcountOrderWalks(
      {
        refcountOf: (c) => rc.get(c),
        tableEntries: rc.tableEntries,
        hasBlock: (i) => rc.blockFor(i * rc.entriesPerBlock) !== 0,
        oldPerBlock: rc.entriesPerBlock,
        newPerBlock: refblockEntries(s.clusterBits, order),
        clusterSize: cs,
      },
      status,
    );
  }
  const newMax = maxRefcount(order);
  const newBits = 2 ** order;
  const end = Math.ceil(s.device.size() / cs);
  const counts: number[] = new Array<number>(end).fill(0);
  for (let c = 0; c < end; c++) {
    const n = rc.get(c);
    if (n > newMax) {
      throw new ArgumentError(
        'BAD_REFCOUNT_BITS',
        `Cannot decrease refcount entry width to ${newBits} bits: Cluster at offset 0x${(c * cs).toString(16)} has a refcount of ${n}`,
        { cluster: c, refcount: n },
      );
    }
    counts[c] = n;
  }
  // The old structures are free once the header points at the new ones.
  const oldTable = rc.tablePlace();
  const table = new Uint8Array(oldTable.bytes);
  rc.copyTableInto(table);
  for (let i = 0; i < table.length / 8; i++) {
    const off = rc.blockFor(i * rc.entriesPerBlock);
    if (off !== 0 && off / cs < end) counts[off / cs] = 0;
  }
  for (let c = 0; c < oldTable.bytes / cs; c++) counts[oldTable.offset / cs + c] = 0;

  // Size the new structures at the end of the file: blocks for every range with a non-zero
  // refcount (theirs included), and a table for all of them; repeat until it stops growing.
  const perBlock = refblockEntries(s.clusterBits, order);
  let blocks = 0;
  let tableClusters = 1;
  for (;;) {
    const total = end + tableClusters + blocks;
    const nBlocks = usedBlocks(counts, end, total, perBlock).length;
    const tClusters = Math.max(1, Math.ceil((Math.ceil(total / perBlock) * 8) / cs));
    if (nBlocks === blocks && tClusters === tableClusters) break;
    blocks = nBlocks;
    tableClusters = tClusters;
  }
  const tableStart = end;
  const total = end + tableClusters + blocks;
  const indices = usedBlocks(counts, end, total, perBlock);
  const newTable = new Uint8Array(tableClusters * cs);
  const count = (c: number): number => (c < end ? counts[c]! : 1);
  indices.forEach((bi, k) => {
    const blockCluster = tableStart + tableClusters + k;
    const block = new Uint8Array(cs);
    for (let c = bi * perBlock; c < Math.min(total, (bi + 1) * perBlock); c++) {
      const n = count(c);
      if (n !== 0) setRefcount(block, c - bi * perBlock, order, n);
    }
    s.device.write(block, blockCluster * cs);
    writeRefTable(newTable, bi, blockCluster * cs);
  });
  s.device.write(newTable, tableStart * cs);
  s.device.flush();
  meta.updateHeaderNow((h) => {
    h.refcountOrder = order;
    h.refcountTableOffset = tableStart * cs;
    h.refcountTableClusters = tableClusters;
  });
  rc.reload({ order, tableOffset: tableStart * cs, tableClusters });
  for (let c = 0; c < end; c++) if (counts[c] === 0) s.alloc.freed(c);
}

/** Refcount block indices with a non-zero refcount in their range (new structures count 1). */
function usedBlocks(counts: readonly number[], end: number, total: number, perBlock: number): number[] {
  const out: number[] = [];
  for (let bi = 0; bi * perBlock < total; bi++) {
    const lo = bi * perBlock;
    const hi = Math.min(total, lo + perBlock);
    let used = hi > end; // the new table and blocks themselves
    for (let c = lo; !used && c < Math.min(hi, end); c++) used = counts[c] !== 0;
    if (used) out.push(bi);
  }
  return out;
}
