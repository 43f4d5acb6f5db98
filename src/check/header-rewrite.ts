/**
 * QEMU rewrites the whole header cluster (qcow2_update_header) whenever a read-write open changes a
 * header field: marking the image corrupt or clean, dropping unknown autoclear bits, storing
 * bitmaps. A repair that is to leave the image as QEMU's leaves it must write the same cluster,
 * because on a damaged image other metadata (an L2 table, a refcount block) may share cluster 0.
 *
 * What QEMU writes (qcow2.txt "Header", and qcow2_update_header in QEMU 7.2):
 * - the fixed fields from its open state; for v3 header_length = 112 plus the unknown fields it
 *   read past 112 (kept verbatim), compression_type at 104, zero padding 105..111;
 * - extensions in its order: backing format, external data file name, crypto header, the
 *   feature name table (v3 with clusters over 4 KiB only), bitmaps (when it loaded any), then the
 *   extensions it does not know, in reverse order of reading (it keeps them on a list head-first);
 * - the end marker, the backing file name right after it, and zeros to the end of the cluster.
 */
import { setU32, setU64, textEncoder } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { encodeFeatureTable, QEMU_FEATURE_NAMES, type Header } from '../format/header.ts';

/** sizeof(QCowHeader) in QEMU 7.2: the v3 fields, compression_type and 7 padding bytes. */
const QEMU_HEADER_SIZE = 112;
const KNOWN = new Set([
  C.EXT_BACKING_FORMAT,
  C.EXT_FEATURE_TABLE,
  C.EXT_BITMAPS,
  C.EXT_CRYPTO_HEADER,
  C.EXT_DATA_FILE,
]);

/** The open state QEMU writes from, where it differs from the header as read. */
export interface HeaderState {
  incompatibleFeatures: bigint;
  autoclearFeatures: bigint;
  nbSnapshots: number;
  snapshotsOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  /** The bitmaps extension QEMU holds (none when it ignored or dropped it). */
  bitmaps?: { nbBitmaps: number; directorySize: number; directoryOffset: number };
}

/** The header cluster qcow2_update_header writes for `h` with `state`. */
export function qemuHeaderCluster(h: Header, state: HeaderState): Uint8Array {
  const cs = 2 ** h.clusterBits;
  const b = new Uint8Array(cs);
  setU32(b, 0, C.QCOW_MAGIC);
  setU32(b, 4, h.version);
  setU32(b, 20, h.clusterBits);
  setU64(b, 24, h.size);
  setU32(b, 32, h.cryptMethod);
  setU32(b, 36, h.l1Size);
  setU64(b, 40, h.l1TableOffset);
  setU64(b, 48, state.refcountTableOffset);
  setU32(b, 56, state.refcountTableClusters);
  setU32(b, 60, state.nbSnapshots);
  setU64(b, 64, state.snapshotsOffset);
  let o: number;
  if (h.version === 2) {
    o = C.HEADER_V2_LENGTH;
  } else {
    const unknown = h.headerLength > QEMU_HEADER_SIZE ? h.headerLength - QEMU_HEADER_SIZE : 0;
    const dv = new DataView(b.buffer);
    dv.setBigUint64(72, state.incompatibleFeatures);
    dv.setBigUint64(80, h.compatibleFeatures);
    dv.setBigUint64(88, state.autoclearFeatures);
    setU32(b, 96, h.refcountOrder);
    setU32(b, 100, QEMU_HEADER_SIZE + unknown);
    b[104] = h.compressionType;
    // extraHeaderBytes starts at byte 105: the unknown fields start at 112.
    if (unknown) b.set(h.extraHeaderBytes.subarray(QEMU_HEADER_SIZE - 105), QEMU_HEADER_SIZE);
    o = QEMU_HEADER_SIZE + unknown;
  }
  const add = (type: number, data: Uint8Array): void => {
    if (o + 8 + ((data.length + 7) & ~7) > cs) return; // QEMU fails the update (-ENOSPC)
    setU32(b, o, type);
    setU32(b, o + 4, data.length);
    b.set(data, o + 8);
    o += 8 + ((data.length + 7) & ~7);
  };
  const ext = (type: number): Uint8Array | undefined => h.extensions.find((e) => e.type === type)?.data;
  const backingFormat = ext(C.EXT_BACKING_FORMAT);
  if (backingFormat) {
    // QEMU keeps the name as a C string: it writes strlen() bytes.
    const nul = backingFormat.indexOf(0);
    add(C.EXT_BACKING_FORMAT, nul < 0 ? backingFormat : backingFormat.subarray(0, nul));
  }
  const dataFile = ext(C.EXT_DATA_FILE);
  if (dataFile && (state.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n) {
    const nul = dataFile.indexOf(0);
    add(C.EXT_DATA_FILE, nul < 0 ? dataFile : dataFile.subarray(0, nul));
  }
  const crypto = ext(C.EXT_CRYPTO_HEADER);
  if (crypto && crypto.length === 16 && crypto.some((v, i) => i < 8 && v !== 0))
    add(C.EXT_CRYPTO_HEADER, crypto);
  if (h.version >= 3 && cs > 4096) add(C.EXT_FEATURE_TABLE, encodeFeatureTable(QEMU_FEATURE_NAMES));
  if (state.bitmaps && state.bitmaps.nbBitmaps > 0) {
    const d = new Uint8Array(24);
    setU32(d, 0, state.bitmaps.nbBitmaps);
    setU64(d, 8, state.bitmaps.directorySize);
    setU64(d, 16, state.bitmaps.directoryOffset);
    add(C.EXT_BITMAPS, d);
  }
  for (const e of [...h.extensions].reverse()) if (!KNOWN.has(e.type)) add(e.type, e.data);
  o += 8; // end marker (zeros)
  if (h.backingFile !== undefined) {
    const name = textEncoder.encode(h.backingFile);
    b.set(name.subarray(0, Math.max(0, cs - o)), o);
    setU64(b, 8, o);
    setU32(b, 16, name.length);
  }
  return b;
}

/** The state as the header itself says (what QEMU holds right after opening it). */
export function stateOf(h: Header): HeaderState {
  const s: HeaderState = {
    incompatibleFeatures: h.incompatibleFeatures,
    autoclearFeatures: h.autoclearFeatures,
    nbSnapshots: h.nbSnapshots,
    snapshotsOffset: h.snapshotsOffset,
    refcountTableOffset: h.refcountTableOffset,
    refcountTableClusters: h.refcountTableClusters,
  };
  const e = h.extensions.find((x) => x.type === C.EXT_BITMAPS);
  if (e && e.data.length >= 24 && (h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n) {
    const dv = new DataView(e.data.buffer, e.data.byteOffset, e.data.byteLength);
    s.bitmaps = {
      nbBitmaps: dv.getUint32(0),
      directorySize: Number(dv.getBigUint64(8)),
      directoryOffset: Number(dv.getBigUint64(16)),
    };
  }
  return s;
}
