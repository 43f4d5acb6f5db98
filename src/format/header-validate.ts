/**
 * QEMU's open-time checks of a decoded header (qcow2_do_open): unknown incompatible features, and
 * every offset and size against the file — what `validateHeader` refuses, QEMU refuses to open.
 * Pure: no I/O.
 */
import { HeaderError, UnsupportedError } from '../errors.ts';
import * as C from './constants.ts';
import { featureNames, l1EntriesFor, type Header } from './header.ts';

function describeUnknown(h: Header, mask: bigint, type: number): string {
  const names = featureNames(h);
  const parts: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if (!(mask & (1n << BigInt(bit)))) continue;
    const f = names.find((n) => n.type === type && n.bit === bit);
    parts.push(f ? f.name : `Unknown incompatible feature: ${(1n << BigInt(bit)).toString(16)}`);
  }
  return parts.join(', ');
}

/** Features of a header that refuse the open (unknown incompatible bits), by QEMU's rules. */
export function checkFeatures(h: Header): void {
  const unknown = h.incompatibleFeatures & ~C.INCOMPAT_MASK;
  if (unknown) {
    throw new UnsupportedError(
      'UNKNOWN_INCOMPAT_FEATURE',
      `Unsupported IMGFMT feature(s): ${describeUnknown(h, unknown, C.FEATURE_TYPE_INCOMPAT)}`,
      {
        field: 'incompatible_features',
        value: '0x' + unknown.toString(16),
      },
    );
  }
  const hasCompressionBit = (h.incompatibleFeatures & C.INCOMPAT_COMPRESSION) !== 0n;
  if (h.compressionType !== C.COMPRESSION_ZLIB && !hasCompressionBit) {
    throw new HeaderError(
      'BAD_COMPRESSION_TYPE',
      `compression_type ${h.compressionType} requires the incompatible compression type bit`,
      'compression_type',
      h.compressionType,
    );
  }
  if (hasCompressionBit && h.compressionType === C.COMPRESSION_ZLIB) {
    throw new HeaderError(
      'BAD_COMPRESSION_TYPE',
      'The compression type bit is set but compression_type is zlib',
      'compression_type',
      h.compressionType,
    );
  }
  if (h.compressionType !== C.COMPRESSION_ZLIB && h.compressionType !== C.COMPRESSION_ZSTD) {
    throw new HeaderError(
      'BAD_COMPRESSION_TYPE',
      `Unknown compression type ${h.compressionType}`,
      'compression_type',
      h.compressionType,
    );
  }
  if (h.cryptMethod > C.QCOW_CRYPT_LUKS) {
    throw new HeaderError(
      'BAD_CRYPT_METHOD',
      `Unsupported encryption method: ${h.cryptMethod}`,
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
export function validateHeader(h: Header, fileSize: number): void {
  const cs = 2 ** h.clusterBits;
  const aligned = (v: number): boolean => v % cs === 0;
  checkFeatures(h);
  if (h.l1Size > C.QCOW_MAX_L1_SIZE / 8) {
    throw new HeaderError(
      'L1_TOO_LARGE',
      `Active L1 table too large (${h.l1Size} entries)`,
      'l1_size',
      h.l1Size,
    );
  }
  const extL2 = (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
  const needed = l1EntriesFor(h.size, h.clusterBits, extL2);
  if (needed > C.QCOW_MAX_L1_SIZE / 8) {
    throw new HeaderError('IMAGE_TOO_BIG', `Image is too big (size ${h.size})`, 'size', h.size);
  }
  if (h.l1Size < needed) {
    throw new HeaderError(
      'L1_TOO_SMALL',
      `L1 table is too small (${h.l1Size} entries, ${needed} needed)`,
      'l1_size',
      h.l1Size,
    );
  }
  if (h.l1Size > 0 && (!aligned(h.l1TableOffset) || h.l1TableOffset === 0)) {
    throw new HeaderError(
      'BAD_L1_OFFSET',
      `Invalid L1 table offset 0x${h.l1TableOffset.toString(16)}`,
      'l1_table_offset',
      h.l1TableOffset,
    );
  }
  if (h.refcountTableClusters * cs > C.QCOW_MAX_REFTABLE_SIZE) {
    throw new HeaderError(
      'REFTABLE_TOO_LARGE',
      `Reference count table too large (${h.refcountTableClusters} clusters)`,
      'refcount_table_clusters',
      h.refcountTableClusters,
    );
  }
  if (h.refcountTableClusters === 0) {
    throw new HeaderError(
      'BAD_REFTABLE',
      'Image does not contain a reference count table',
      'refcount_table_clusters',
      0,
    );
  }
  if (!aligned(h.refcountTableOffset) || h.refcountTableOffset === 0) {
    throw new HeaderError(
      'BAD_REFTABLE_OFFSET',
      `Invalid reference count table offset 0x${h.refcountTableOffset.toString(16)}`,
      'refcount_table_offset',
      h.refcountTableOffset,
    );
  }
  if (h.nbSnapshots > C.QCOW_MAX_SNAPSHOTS) {
    throw new HeaderError(
      'TOO_MANY_SNAPSHOTS',
      `Too many snapshots (${h.nbSnapshots})`,
      'nb_snapshots',
      h.nbSnapshots,
    );
  }
  if (h.nbSnapshots > 0 && (!aligned(h.snapshotsOffset) || h.snapshotsOffset === 0)) {
    throw new HeaderError(
      'BAD_SNAPSHOT_OFFSET',
      `Invalid snapshot table offset 0x${h.snapshotsOffset.toString(16)}`,
      'snapshots_offset',
      h.snapshotsOffset,
    );
  }
  // QEMU (validate_table_offset) refuses tables whose end overflows; tables past the end of the
  // file are accepted (they read as zeros) and left to the checker. Both are bounded above.
  const overflows = (off: number, len: number): boolean => off + len > Number.MAX_SAFE_INTEGER;
  if (overflows(h.refcountTableOffset, h.refcountTableClusters * cs)) {
    throw new HeaderError(
      'BAD_REFTABLE_OFFSET',
      `Reference count table offset 0x${h.refcountTableOffset.toString(16)} is out of range`,
      'refcount_table_offset',
      h.refcountTableOffset,
    );
  }
  if (overflows(h.l1TableOffset, h.l1Size * 8)) {
    throw new HeaderError(
      'BAD_L1_OFFSET',
      `L1 table offset 0x${h.l1TableOffset.toString(16)} is out of range`,
      'l1_table_offset',
      h.l1TableOffset,
    );
  }
  void fileSize;
}

// ---- encode ----
