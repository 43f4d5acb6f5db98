/**
 * The qcow2 header and its extensions (qcow2.txt "Header", "Header extensions"): decode, encode,
 * validate. Pure: no I/O. `decodeHeader` takes the bytes of cluster 0 (or at least the header, the
 * extensions and the backing file name).
 */
import { HeaderError } from '../errors.ts';
import { setU32, setU64, setU64n, textDecoder, textEncoder, u32, u64, u64n } from './bytes.ts';
import * as C from './constants.ts';

export interface HeaderExtension {
  type: number;
  /** The extension's data, without padding. */
  data: Uint8Array;
}

export interface FeatureName {
  type: number; // FEATURE_TYPE_*
  bit: number;
  name: string;
}

export interface Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  /** Virtual disk size in bytes. */
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Header bytes from offset 105 up to header_length that this version does not interpret. */
  extraHeaderBytes: Uint8Array;
  /** Header extensions in on-disk order (end marker excluded). */
  extensions: HeaderExtension[];
  /** The backing file name, if any. */
  backingFile: string | undefined;
}

// ---- extension accessors ----

export function findExtension(h: Header, type: number): HeaderExtension | undefined {
  return h.extensions.find((e) => e.type === type);
}

export function backingFormat(h: Header): string | undefined {
  // QEMU (qcow2_read_extensions) reads every extension in order: of two backing format
  // extensions, the last one is the image's backing format.
  const e = h.extensions.filter((x) => x.type === C.EXT_BACKING_FORMAT).at(-1);
  return e ? textDecoder.decode(e.data) : undefined;
}

export function dataFileName(h: Header): string | undefined {
  const e = findExtension(h, C.EXT_DATA_FILE);
  return e ? textDecoder.decode(e.data) : undefined;
}

export interface CryptoHeaderPointer {
  offset: number;
  length: number;
}

export function cryptoHeaderPointer(h: Header): CryptoHeaderPointer | undefined {
  const e = findExtension(h, C.EXT_CRYPTO_HEADER);
  return e ? { offset: u64(e.data, 0), length: u64(e.data, 8) } : undefined;
}

export interface BitmapsExtension {
  nbBitmaps: number;
  bitmapDirectorySize: number;
  bitmapDirectoryOffset: number;
}

export function bitmapsExtension(h: Header): BitmapsExtension | undefined {
  const e = findExtension(h, C.EXT_BITMAPS);
  if (!e) return undefined;
  // nb_bitmaps u32, reserved u32, bitmap_directory_size u64, bitmap_directory_offset u64
  return {
    nbBitmaps: u32(e.data, 0),
    bitmapDirectorySize: u64(e.data, 8),
    bitmapDirectoryOffset: u64(e.data, 16),
  };
}

export function featureNames(h: Header): FeatureName[] {
  const e = findExtension(h, C.EXT_FEATURE_TABLE);
  if (!e) return [];
  const out: FeatureName[] = [];
  for (let o = 0; o + C.FEATURE_NAME_ENTRY_SIZE <= e.data.length; o += C.FEATURE_NAME_ENTRY_SIZE) {
    const raw = e.data.subarray(o + 2, o + 2 + C.FEATURE_NAME_LENGTH);
    const nul = raw.indexOf(0);
    out.push({
      type: e.data[o]!,
      bit: e.data[o + 1]!,
      name: textDecoder.decode(nul < 0 ? raw : raw.subarray(0, nul)),
    });
  }
  return out;
}

/** The feature name table QEMU 7.2 writes into every v3 image (8 entries). */
export const QEMU_FEATURE_NAMES: readonly FeatureName[] = [
  { type: C.FEATURE_TYPE_INCOMPAT, bit: C.INCOMPAT_DIRTY_BIT, name: 'dirty bit' },
  { type: C.FEATURE_TYPE_INCOMPAT, bit: C.INCOMPAT_CORRUPT_BIT, name: 'corrupt bit' },
  { type: C.FEATURE_TYPE_INCOMPAT, bit: C.INCOMPAT_DATA_FILE_BIT, name: 'external data file' },
  { type: C.FEATURE_TYPE_INCOMPAT, bit: C.INCOMPAT_COMPRESSION_BIT, name: 'compression type' },
  { type: C.FEATURE_TYPE_INCOMPAT, bit: C.INCOMPAT_EXTL2_BIT, name: 'extended L2 entries' },
  { type: C.FEATURE_TYPE_COMPAT, bit: C.COMPAT_LAZY_REFCOUNTS_BIT, name: 'lazy refcounts' },
  { type: C.FEATURE_TYPE_AUTOCLEAR, bit: C.AUTOCLEAR_BITMAPS_BIT, name: 'bitmaps' },
  { type: C.FEATURE_TYPE_AUTOCLEAR, bit: C.AUTOCLEAR_DATA_FILE_RAW_BIT, name: 'raw external data' },
];

export function encodeFeatureTable(names: readonly FeatureName[]): Uint8Array {
  const out = new Uint8Array(names.length * C.FEATURE_NAME_ENTRY_SIZE);
  names.forEach((f, i) => {
    const o = i * C.FEATURE_NAME_ENTRY_SIZE;
    out[o] = f.type;
    out[o + 1] = f.bit;
    out.set(textEncoder.encode(f.name).subarray(0, C.FEATURE_NAME_LENGTH), o + 2);
  });
  return out;
}

export function encodeCryptoHeaderPointer(p: CryptoHeaderPointer): Uint8Array {
  const out = new Uint8Array(16);
  setU64(out, 0, p.offset);
  setU64(out, 8, p.length);
  return out;
}

export function encodeBitmapsExtension(b: BitmapsExtension): Uint8Array {
  const out = new Uint8Array(24);
  setU32(out, 0, b.nbBitmaps);
  setU64(out, 8, b.bitmapDirectorySize);
  setU64(out, 16, b.bitmapDirectoryOffset);
  return out;
}

/** Replace (or, with data undefined, remove) an extension, keeping QEMU's order for new ones. */
export function setExtension(h: Header, type: number, data: Uint8Array | undefined): void {
  const i = h.extensions.findIndex((e) => e.type === type);
  // QEMU rewrites the header with one extension of each known type: duplicates go.
  if (i >= 0) h.extensions = h.extensions.filter((e, j) => j <= i || e.type !== type);
  if (data === undefined) {
    if (i >= 0) h.extensions.splice(i, 1);
    return;
  }
  if (i >= 0) {
    h.extensions[i] = { type, data };
    return;
  }
  // QEMU's order (qcow2_update_header): backing format, data file, crypto header, feature table,
  // bitmaps, then unknown extensions.
  const rank = (t: number): number => {
    const order = [
      C.EXT_BACKING_FORMAT,
      C.EXT_DATA_FILE,
      C.EXT_CRYPTO_HEADER,
      C.EXT_FEATURE_TABLE,
      C.EXT_BITMAPS,
    ];
    const r = order.indexOf(t);
    return r < 0 ? order.length : r;
  };
  let at = h.extensions.findIndex((e) => rank(e.type) > rank(type));
  if (at < 0) at = h.extensions.length;
  h.extensions.splice(at, 0, { type, data });
}

// ---- decode ----

/**
 * Decode the header at the start of `b`. Structural checks that need no file size happen here;
 * `validateHeader` (header-validate.ts) adds QEMU's open-time checks against the file.
 */
export function decodeHeader(b: Uint8Array): Header {
  if (b.length < C.HEADER_V2_LENGTH) {
    throw new HeaderError(
      'TRUNCATED_HEADER',
      `Image is too short for a qcow2 header (${b.length} bytes)`,
      'length',
      b.length,
    );
  }
  const magic = u32(b, 0);
  if (magic !== C.QCOW_MAGIC) {
    throw new HeaderError(
      'BAD_MAGIC',
      `Image is not in qcow2 format (magic 0x${magic.toString(16)})`,
      'magic',
      magic,
    );
  }
  const version = u32(b, 4);
  if (version !== 2 && version !== 3) {
    throw new HeaderError('UNSUPPORTED_VERSION', `Unsupported qcow2 version ${version}`, 'version', version);
  }
  const clusterBits = u32(b, 20);
  if (clusterBits < C.MIN_CLUSTER_BITS || clusterBits > C.MAX_CLUSTER_BITS) {
    throw new HeaderError(
      'BAD_CLUSTER_BITS',
      `Unsupported cluster size: 2^${clusterBits}`,
      'cluster_bits',
      clusterBits,
    );
  }
  const clusterSize = 2 ** clusterBits;
  const h: Header = {
    version,
    backingFileOffset: u64(b, 8),
    backingFileSize: u32(b, 16),
    clusterBits,
    size: u64(b, 24),
    cryptMethod: u32(b, 32),
    l1Size: u32(b, 36),
    l1TableOffset: u64(b, 40),
    refcountTableOffset: u64(b, 48),
    refcountTableClusters: u32(b, 56),
    nbSnapshots: u32(b, 60),
    snapshotsOffset: u64(b, 64),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: C.DEFAULT_REFCOUNT_ORDER,
    headerLength: C.HEADER_V2_LENGTH,
    compressionType: C.COMPRESSION_ZLIB,
    extraHeaderBytes: new Uint8Array(0),
    extensions: [],
    backingFile: undefined,
  };
  if (u64n(b, 24) >= 1n << 63n) {
    // QEMU: bdrv_refresh_total_sectors fails with EFBIG on a size that does not fit int64.
    throw new HeaderError(
      'BAD_SIZE',
      'Could not refresh total sector count: File too large',
      'size',
      u64n(b, 24).toString(),
    );
  }
  if (version === 3) {
    if (b.length < C.HEADER_V3_MIN_LENGTH) {
      throw new HeaderError('TRUNCATED_HEADER', 'Image is too short for a v3 header', 'length', b.length);
    }
    h.incompatibleFeatures = u64n(b, 72);
    h.compatibleFeatures = u64n(b, 80);
    h.autoclearFeatures = u64n(b, 88);
    h.refcountOrder = u32(b, 96);
    h.headerLength = u32(b, 100);
    if (h.headerLength < C.HEADER_V3_MIN_LENGTH) {
      throw new HeaderError('BAD_HEADER_LENGTH', 'qcow2 header too short', 'header_length', h.headerLength);
    }
    if (h.headerLength > clusterSize) {
      throw new HeaderError(
        'BAD_HEADER_LENGTH',
        'qcow2 header exceeds cluster size',
        'header_length',
        h.headerLength,
      );
    }
    if (b.length < h.headerLength) {
      throw new HeaderError(
        'TRUNCATED_HEADER',
        'Image is shorter than its header_length',
        'header_length',
        h.headerLength,
      );
    }
    if (h.headerLength > 104) {
      h.compressionType = b[104]!;
      h.extraHeaderBytes = b.slice(105, h.headerLength);
    }
  }
  if (h.refcountOrder > C.MAX_REFCOUNT_ORDER) {
    throw new HeaderError(
      'BAD_REFCOUNT_ORDER',
      'Reference count entry width too large; may not exceed 64 bits',
      'refcount_order',
      h.refcountOrder,
    );
  }

  // qcow2_do_open checks the backing file offset before it reads the extensions.
  if (h.backingFileOffset > clusterSize) {
    throw new HeaderError(
      'BAD_BACKING_OFFSET',
      'Invalid backing file offset',
      'backing_file_offset',
      h.backingFileOffset,
    );
  }
  // Header extensions (v3 only; v2 images may carry them after the 72-byte header too, QEMU reads
  // them for both). They end at the backing file name or at the end of cluster 0.
  const extStart = h.headerLength;
  const extEnd = h.backingFileOffset > 0 ? h.backingFileOffset : clusterSize;
  let o = extStart;
  // (qcow2_read_extensions: an extension header starting before the end is read even when it
  // reaches past it — then it is "too large"; bytes past the end of the file read as zeros)
  const u32At = (at: number): number => (at + 4 <= b.length ? u32(b, at) : 0);
  while (o < extEnd) {
    const type = u32At(o);
    const len = u32At(o + 4);
    o += 8;
    if (o > extEnd || len > extEnd - o) {
      throw new HeaderError('BAD_EXTENSION', 'Header extension too large', 'extension_length', len);
    }
    if (type === C.EXT_END) break;
    if (o + len > b.length) {
      throw new HeaderError('BAD_EXTENSION', 'Header extension too large', 'extension_length', len);
    }
    const data = b.slice(o, o + len);
    switch (type) {
      case C.EXT_BACKING_FORMAT:
        if (len >= 16)
          throw new HeaderError(
            'BAD_EXTENSION',
            `Backing format extension too long (${len} >= 16)`,
            'backing_format_length',
            len,
          );
        break;
      case C.EXT_CRYPTO_HEADER:
        if (len !== 16)
          throw new HeaderError(
            'BAD_EXTENSION',
            `Crypto header extension has length ${len}, expected 16`,
            'crypto_header_length',
            len,
          );
        break;
      case C.EXT_BITMAPS:
        if (len !== 24)
          throw new HeaderError(
            'BAD_EXTENSION',
            'bitmaps_ext: Invalid extension length',
            'bitmaps_length',
            len,
          );
        break;
    }
    h.extensions.push({ type, data });
    o += (len + 7) & ~7;
  }

  if (h.backingFileOffset > 0) {
    const len = h.backingFileSize;
    // qcow2_do_open: the name must start inside cluster 0 (checked above), and fit in it and in
    // 1023 bytes.
    if (len > Math.min(C.QCOW_MAX_BACKING_FILE_NAME, clusterSize - h.backingFileOffset)) {
      throw new HeaderError('BACKING_NAME_TOO_LONG', 'Backing file name too long', 'backing_file_size', len);
    }
    if (h.backingFileOffset + len > b.length) {
      throw new HeaderError(
        'TRUNCATED_HEADER',
        'Backing file name lies beyond the end of the image',
        'backing_file_offset',
        h.backingFileOffset,
      );
    }
    h.backingFile = textDecoder.decode(b.subarray(h.backingFileOffset, h.backingFileOffset + len));
  }
  return h;
}

export function l1EntriesFor(size: number, clusterBits: number, extendedL2: boolean): number {
  const l2Entries = 2 ** clusterBits / (extendedL2 ? C.L2E_SIZE_EXTENDED : C.L2E_SIZE_NORMAL);
  return Math.ceil(size / (2 ** clusterBits * l2Entries));
}

/**
 * Encode the header, its extensions and the backing file name into the bytes of cluster 0 (the
 * result is as long as needed, at most one cluster). Sets backingFileOffset/Size to where the name
 * lands, as QEMU does (right after the extensions), and drops the feature name table when it
 * does not fit.
 */
export function encodeHeader(h: Header): Uint8Array {
  const cs = 2 ** h.clusterBits;
  const headerLength = h.version === 2 ? C.HEADER_V2_LENGTH : h.headerLength;
  let len = headerLength;
  for (const e of h.extensions) len += 8 + ((e.data.length + 7) & ~7);
  if (h.version === 3 || h.extensions.length > 0) len += 8; // end-of-extensions marker
  const name = h.backingFile !== undefined ? textEncoder.encode(h.backingFile) : undefined;
  const nameOffset = len;
  if (name) len += name.length;
  if (len > cs && findExtension(h, C.EXT_FEATURE_TABLE)) {
    // The feature name table is optional: QEMU leaves it out when cluster 0 has no room for it
    // (small clusters with a backing file name or a crypto header). So does the header object.
    setExtension(h, C.EXT_FEATURE_TABLE, undefined);
    return encodeHeader(h);
  }
  if (len > cs) {
    throw new HeaderError(
      'HEADER_TOO_LARGE',
      `Header, extensions and backing file name (${len} bytes) exceed one cluster`,
      'header_area',
      len,
    );
  }
  const b = new Uint8Array(len);
  setU32(b, 0, C.QCOW_MAGIC);
  setU32(b, 4, h.version);
  setU64(b, 8, name ? nameOffset : 0);
  setU32(b, 16, name ? name.length : 0);
  setU32(b, 20, h.clusterBits);
  setU64(b, 24, h.size);
  setU32(b, 32, h.cryptMethod);
  setU32(b, 36, h.l1Size);
  setU64(b, 40, h.l1TableOffset);
  setU64(b, 48, h.refcountTableOffset);
  setU32(b, 56, h.refcountTableClusters);
  setU32(b, 60, h.nbSnapshots);
  setU64(b, 64, h.snapshotsOffset);
  if (h.version === 3) {
    setU64n(b, 72, h.incompatibleFeatures);
    setU64n(b, 80, h.compatibleFeatures);
    setU64n(b, 88, h.autoclearFeatures);
    setU32(b, 96, h.refcountOrder);
    setU32(b, 100, headerLength);
    if (headerLength > 104) {
      b[104] = h.compressionType;
      b.set(h.extraHeaderBytes.subarray(0, headerLength - 105), 105);
    }
  }
  let o = headerLength;
  for (const e of h.extensions) {
    setU32(b, o, e.type);
    setU32(b, o + 4, e.data.length);
    b.set(e.data, o + 8);
    o += 8 + ((e.data.length + 7) & ~7);
  }
  o += 8; // end marker: type 0, length 0 (already zero)
  if (name) b.set(name, nameOffset);
  h.backingFileOffset = name ? nameOffset : 0;
  h.backingFileSize = name ? name.length : 0;
  return b;
}

/**
 * In-place header patches, for repairs that must not re-encode the rest of cluster 0 (the checker:
 * qcow2_mark_corrupt / qcow2_mark_clean, and pointing the header at a rebuilt refcount table).
 * Each returns the bytes and the header offset they go to (qcow2.txt "Header": bytes 48–59 and
 * 72–79).
 */
export interface HeaderPatch {
  at: number;
  bytes: Uint8Array;
}

export const INCOMPATIBLE_FEATURES_AT = 72;

/** refcount_table_offset (u64) and refcount_table_clusters (u32). */
export function refcountTablePatch(offset: number, clusters: number): HeaderPatch {
  const bytes = new Uint8Array(12);
  setU64(bytes, 0, offset);
  setU32(bytes, 8, clusters);
  return { at: 48, bytes };
}

/** incompatible_features (v3) with `set` bits set and `clear` bits cleared, from its current bytes. */
export function incompatibleFeaturesPatch(current: Uint8Array, set: bigint, clear: bigint): HeaderPatch {
  const bytes = new Uint8Array(8);
  setU64n(bytes, 0, (u64n(current, 0) | set) & ~clear);
  return { at: INCOMPATIBLE_FEATURES_AT, bytes };
}

export const AUTOCLEAR_FEATURES_AT = 88;

/** autoclear_features (v3) reduced to the bits this implementation knows (qcow2.txt: a writer that
 * does not know an autoclear bit must clear it). */
export function knownAutoclearPatch(h: Header): HeaderPatch | undefined {
  if (h.version !== 3 || (h.autoclearFeatures & ~C.AUTOCLEAR_MASK) === 0n) return undefined;
  const bytes = new Uint8Array(8);
  setU64n(bytes, 0, h.autoclearFeatures & C.AUTOCLEAR_MASK);
  return { at: AUTOCLEAR_FEATURES_AT, bytes };
}

/** A fresh header with QEMU's defaults for the given layout (tables not yet placed). */
export function newHeader(opts: {
  version: 2 | 3;
  clusterBits: number;
  size: number;
  refcountOrder: number;
  extendedL2?: boolean;
  lazyRefcounts?: boolean;
  compressionType?: number;
}): Header {
  let incompat = 0n;
  if (opts.extendedL2) incompat |= C.INCOMPAT_EXTL2;
  if (opts.compressionType === C.COMPRESSION_ZSTD) incompat |= C.INCOMPAT_COMPRESSION;
  const h: Header = {
    version: opts.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: opts.clusterBits,
    size: opts.size,
    cryptMethod: 0,
    l1Size: 0,
    l1TableOffset: 0,
    refcountTableOffset: 0,
    refcountTableClusters: 0,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: incompat,
    compatibleFeatures: opts.lazyRefcounts ? C.COMPAT_LAZY_REFCOUNTS : 0n,
    autoclearFeatures: 0n,
    refcountOrder: opts.version === 2 ? C.DEFAULT_REFCOUNT_ORDER : opts.refcountOrder,
    headerLength: opts.version === 2 ? C.HEADER_V2_LENGTH : C.HEADER_V3_QEMU_LENGTH,
    compressionType: opts.compressionType ?? C.COMPRESSION_ZLIB,
    extraHeaderBytes: new Uint8Array(opts.version === 2 ? 0 : C.HEADER_V3_QEMU_LENGTH - 105),
    extensions: [],
    backingFile: undefined,
  };
  if (opts.version === 3) setExtension(h, C.EXT_FEATURE_TABLE, encodeFeatureTable(QEMU_FEATURE_NAMES));
  return h;
}
