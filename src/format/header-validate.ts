/**
 * QEMU's open-time checks of a decoded header (qcow2_do_open): unknown incompatible features, and
 * every offset and size against the file — what `validateHeader` refuses, QEMU refuses to open.
 * Pure: no I/O.
 */
import { HeaderError, UnsupportedError } from '../errors.ts';
import * as C from './constants.ts';
import { findExtension, l1EntriesFor, type Header } from './header.ts';
import { u32, u64 } from './bytes.ts';
import { QCOW2_MAX_BITMAP_DIRECTORY_SIZE, QCOW2_MAX_BITMAPS } from './bitmaps.ts';

function describeUnknown(h: Header, mask: bigint, type: number): string {
  // QEMU (report_unsupported_feature): each bit the feature name table names, by name, then
  // every remaining bit together as one hexadecimal mask.
  const parts: string[] = [];
  let rest = mask;
  for (const f of featureTableAsQemuReadsIt(h)) {
    const bit = 1n << BigInt(f.bit);
    if (f.type === type && rest & bit) {
      parts.push(f.name);
      rest &= ~bit;
    }
  }
  if (rest) parts.push(`Unknown incompatible feature: ${rest.toString(16)}`);
  return parts.join(', ');
}

/**
 * The feature name table as QEMU's error path walks it (qcow2_read_extensions, then
 * report_unsupported_feature): the extension's bytes zero-padded to whole 48-byte entries, read
 * entry by entry up to the first one whose name is empty, each name at most 46 bytes. A short table
 * (one entry of 14 bytes) still names its feature.
 */
function featureTableAsQemuReadsIt(h: Header): { type: number; bit: number; name: string }[] {
  const e = findExtension(h, C.EXT_FEATURE_TABLE);
  if (!e) return [];
  const size = C.FEATURE_NAME_ENTRY_SIZE;
  const padded = new Uint8Array(Math.ceil(e.data.length / size) * size);
  padded.set(e.data);
  const out: { type: number; bit: number; name: string }[] = [];
  for (let o = 0; o < padded.length; o += size) {
    const raw = padded.subarray(o + 2, o + 2 + C.FEATURE_NAME_LENGTH);
    const nul = raw.indexOf(0);
    if (nul === 0) break;
    out.push({
      type: padded[o]!,
      bit: padded[o + 1]!,
      name: latin1.decode(nul < 0 ? raw : raw.subarray(0, nul)),
    });
  }
  return out;
}

const latin1 = new TextDecoder('latin1');

/** Features of a header that refuse the open (unknown incompatible bits), by QEMU's rules. */
export function checkFeatures(h: Header): void {
  // QEMU validates the compression type (validate_compression_type) before it looks at unknown
  // incompatible bits: an image with both problems is refused for its compression type.
  const hasCompressionBit = (h.incompatibleFeatures & C.INCOMPAT_COMPRESSION) !== 0n;
  if (h.compressionType !== C.COMPRESSION_ZLIB && h.compressionType !== C.COMPRESSION_ZSTD) {
    throw new HeaderError(
      'BAD_COMPRESSION_TYPE',
      `qcow2: unknown compression type: ${h.compressionType}`,
      'compression_type',
      h.compressionType,
    );
  }
  if (hasCompressionBit && h.compressionType === C.COMPRESSION_ZLIB) {
    throw new HeaderError(
      'BAD_COMPRESSION_TYPE',
      'qcow2: Compression type incompatible feature bit must not be set',
      'compression_type',
      h.compressionType,
    );
  }
  if (h.compressionType !== C.COMPRESSION_ZLIB && !hasCompressionBit) {
    throw new HeaderError(
      'BAD_COMPRESSION_TYPE',
      'qcow2: Compression type incompatible feature bit must be set',
      'compression_type',
      h.compressionType,
    );
  }
  const unknown = h.incompatibleFeatures & ~C.INCOMPAT_MASK;
  if (unknown) {
    throw new UnsupportedError(
      'UNKNOWN_INCOMPAT_FEATURE',
      `Unsupported qcow2 feature(s): ${describeUnknown(h, unknown, C.FEATURE_TYPE_INCOMPAT)}`,
      {
        field: 'incompatible_features',
        value: '0x' + unknown.toString(16),
      },
    );
  }
  if (h.cryptMethod > C.QCOW_CRYPT_LUKS) {
    throw new HeaderError(
      'BAD_CRYPT_METHOD',
      `Unsupported encryption method ${h.cryptMethod | 0}`,
      'crypt_method',
      h.cryptMethod,
    );
  }
  if ((h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n && h.clusterBits < 14) {
    throw new HeaderError(
      'BAD_CLUSTER_BITS',
      'Extended L2 entries need clusters of at least 16 KiB',
      'cluster_bits',
      h.clusterBits,
    );
  }
}

/** Number of L1 entries needed to map `size` bytes. */
/**
 * QEMU's open-time validation (qcow2_do_open) of offsets, sizes and limits, against the length of
 * the image file.
 */
export function validateHeader(h: Header, fileSize: number, opts: { check?: boolean } = {}): void {
  const cs = 2 ** h.clusterBits;
  const aligned = (v: number): boolean => v % cs === 0;
  checkFeatures(h);
  // qcow2_do_open's order: the refcount table, the snapshot table, then the active L1 table.
  if (h.refcountTableClusters * cs > C.QCOW_MAX_REFTABLE_SIZE) {
    throw new HeaderError(
      'REFTABLE_TOO_LARGE',
      'Reference count table too large',
      'refcount_table_clusters',
      h.refcountTableClusters,
    );
  }
  if (h.refcountTableClusters === 0 && !opts.check) {
    throw new HeaderError(
      'BAD_REFTABLE',
      'Image does not contain a reference count table',
      'refcount_table_clusters',
      0,
    );
  }
  // Offset 0 is aligned: QEMU opens such an image (its checker then finds the header read as a table).
  if (!aligned(h.refcountTableOffset)) {
    throw new HeaderError(
      'BAD_REFTABLE_OFFSET',
      'Reference count table offset invalid',
      'refcount_table_offset',
      h.refcountTableOffset,
    );
  }
  if (h.nbSnapshots > C.QCOW_MAX_SNAPSHOTS && !opts.check) {
    throw new HeaderError('TOO_MANY_SNAPSHOTS', 'Snapshot table too large', 'nb_snapshots', h.nbSnapshots);
  }
  // validate_table_offset: the snapshot table offset must be aligned even when the table is empty.
  // qcow2_validate_table: the table must also end below INT64_MAX (QEMU does not compare it with
  // the file's size here).
  const pastInt64 = h.snapshotsOffset > 2 ** 63 - 1 - h.nbSnapshots * C.SNAPSHOT_ENTRY_FIXED_SIZE;
  if (
    !opts.check &&
    (!aligned(h.snapshotsOffset) || (h.nbSnapshots > 0 && h.snapshotsOffset === 0) || pastInt64)
  ) {
    throw new HeaderError(
      'BAD_SNAPSHOT_OFFSET',
      'Snapshot table offset invalid',
      'snapshots_offset',
      h.snapshotsOffset,
    );
  }
  if (h.l1Size > C.QCOW_MAX_L1_SIZE / 8) {
    throw new HeaderError('L1_TOO_LARGE', 'Active L1 table too large', 'l1_size', h.l1Size);
  }
  const extL2 = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
  const needed = l1EntriesFor(h.size, h.clusterBits, extL2);
  if (needed > C.QCOW_MAX_L1_SIZE / 8) {
    throw new HeaderError('IMAGE_TOO_BIG', 'Image is too big', 'size', h.size);
  }
  if (h.l1Size < needed) {
    throw new HeaderError('L1_TOO_SMALL', 'L1 table is too small', 'l1_size', h.l1Size);
  }
  // qcow2_validate_table accepts offset 0 (aligned); the engine, which would read the header as its
  // L1 table, still refuses it outside check mode.
  if (h.l1Size > 0 && (!aligned(h.l1TableOffset) || (h.l1TableOffset === 0 && !opts.check))) {
    throw new HeaderError(
      'BAD_L1_OFFSET',
      'Active L1 table offset invalid',
      'l1_table_offset',
      h.l1TableOffset,
    );
  }
  // QEMU (validate_table_offset) refuses tables whose end overflows; tables past the end of the
  // file are accepted (they read as zeros) and left to the checker. Both are bounded above.
  const overflows = (off: number, len: number): boolean => off + len > Number.MAX_SAFE_INTEGER;
  if (overflows(h.refcountTableOffset, h.refcountTableClusters * cs)) {
    throw new HeaderError(
      'BAD_REFTABLE_OFFSET',
      'Reference count table offset invalid',
      'refcount_table_offset',
      h.refcountTableOffset,
    );
  }
  if (overflows(h.l1TableOffset, h.l1Size * 8)) {
    throw new HeaderError(
      'BAD_L1_OFFSET',
      'Active L1 table offset invalid',
      'l1_table_offset',
      h.l1TableOffset,
    );
  }
  validateBitmapsExtensionAtOpen(h, cs);
  if (
    (h.autoclearFeatures & C.AUTOCLEAR_DATA_FILE_RAW) !== 0n &&
    !(h.incompatibleFeatures & C.INCOMPAT_DATA_FILE)
  ) {
    throw new HeaderError(
      'DATA_FILE_RAW_WITHOUT_DATA_FILE',
      'data-file-raw requires a data file',
      'autoclear_features',
      '0x' + h.autoclearFeatures.toString(16),
    );
  }
  void fileSize;
}

/**
 * qcow2_read_extensions' checks of the bitmaps extension (after the L1 table's, before the data
 * file's), with QEMU's words. Without the autoclear bitmaps bit the extension is ignored (QEMU
 * warns and drops it at a read-write open), so nothing here applies.
 */
function validateBitmapsExtensionAtOpen(h: Header, cs: number): void {
  if ((h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) return;
  const e = findExtension(h, C.EXT_BITMAPS);
  if (!e || e.data.length < 24) return; // a wrong length is the decoder's refusal
  // nb_bitmaps u32, reserved u32, bitmap_directory_size u64, bitmap_directory_offset u64
  const nb = u32(e.data, 0);
  const reserved = u32(e.data, 4);
  const dirSize = u64(e.data, 8);
  const dirOffset = u64(e.data, 16);
  if (reserved !== 0)
    throw new HeaderError(
      'BAD_EXTENSION',
      'bitmaps_ext: Reserved field is not zero',
      'bitmaps_reserved',
      reserved,
    );
  if (nb > QCOW2_MAX_BITMAPS)
    throw new HeaderError(
      'TOO_MANY_BITMAPS',
      `bitmaps_ext: Image has ${nb} bitmaps, exceeding the QEMU supported maximum of ${QCOW2_MAX_BITMAPS}`,
      'nb_bitmaps',
      nb,
    );
  if (nb === 0)
    throw new HeaderError('BITMAPS_EXT_EMPTY', 'found bitmaps extension with zero bitmaps', 'nb_bitmaps', 0);
  if (dirOffset % cs !== 0)
    throw new HeaderError(
      'BITMAP_DIRECTORY_UNALIGNED',
      'bitmaps_ext: invalid bitmap directory offset',
      'bitmap_directory_offset',
      dirOffset,
    );
  if (dirSize > QCOW2_MAX_BITMAP_DIRECTORY_SIZE)
    throw new HeaderError(
      'BITMAP_DIRECTORY_TOO_LARGE',
      `bitmaps_ext: bitmap directory size (${dirSize}) exceeds the maximum supported size (${QCOW2_MAX_BITMAP_DIRECTORY_SIZE})`,
      'bitmap_directory_size',
      dirSize,
    );
}
