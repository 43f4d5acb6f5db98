/**
 * Named constants of the qcow2 format (QEMU docs/interop/qcow2.txt). One place for every magic
 * number, mask and feature bit; feature bits come as (bit, mask) plus a mask of all known bits, so
 * "unknown incompatible bit" is one comparison.
 */

export const QCOW_MAGIC = 0x514649fb; // "QFI\xfb"

export const HEADER_V2_LENGTH = 72;
export const HEADER_V3_MIN_LENGTH = 104;
/** What QEMU writes for v3: 104 + compression_type (1) + padding to a multiple of 8. */
export const HEADER_V3_QEMU_LENGTH = 112;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const DEFAULT_CLUSTER_BITS = 16;

export const MAX_REFCOUNT_ORDER = 6;
export const DEFAULT_REFCOUNT_ORDER = 4;

// Limits QEMU enforces at open time (block/qcow2.h).
export const QCOW_MAX_L1_SIZE = 32 * 1024 * 1024; // bytes of L1 table
export const QCOW_MAX_REFTABLE_SIZE = 8 * 1024 * 1024; // bytes of refcount table
export const QCOW_MAX_SNAPSHOTS = 65536;
export const QCOW_MAX_SNAPSHOTS_SIZE = 64 * 1024 * 1024;
export const QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024;
export const QCOW_MAX_BACKING_FILE_NAME = 1023;

// Crypt methods (header offset 32).
export const QCOW_CRYPT_NONE = 0;
export const QCOW_CRYPT_AES = 1;
export const QCOW_CRYPT_LUKS = 2;

// Incompatible features (header offset 72).
export const INCOMPAT_DIRTY_BIT = 0;
export const INCOMPAT_CORRUPT_BIT = 1;
export const INCOMPAT_DATA_FILE_BIT = 2;
export const INCOMPAT_COMPRESSION_BIT = 3;
export const INCOMPAT_EXTL2_BIT = 4;
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_MASK =
  INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

// Compatible features (header offset 80).
export const COMPAT_LAZY_REFCOUNTS_BIT = 0;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const COMPAT_MASK = COMPAT_LAZY_REFCOUNTS;

// Autoclear features (header offset 88).
export const AUTOCLEAR_BITMAPS_BIT = 0;
export const AUTOCLEAR_DATA_FILE_RAW_BIT = 1;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;
export const AUTOCLEAR_MASK = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW;

// Compression types (header byte 104).
export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

// Header extension types.
export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Feature name table entry types (byte 0 of each 48-byte entry). */
export const FEATURE_TYPE_INCOMPAT = 0;
export const FEATURE_TYPE_COMPAT = 1;
export const FEATURE_TYPE_AUTOCLEAR = 2;
export const FEATURE_NAME_ENTRY_SIZE = 48;
export const FEATURE_NAME_LENGTH = 46;

// Table entries are 64-bit big-endian. JavaScript numbers hold 53 bits, so masks are given on the
// two 32-bit halves: HI covers bits 32..63, LO bits 0..31.

/** L1 entry: bits 9..55 L2 offset, bit 63 COPIED, reserved 0x7f000000000001ff. */
export const L1E_OFFSET_MASK_HI = 0x00ffffff;
export const L1E_OFFSET_MASK_LO = 0xfffffe00;
export const L1E_COPIED_HI = 0x80000000;
export const L1E_RESERVED_HI = 0x7f000000;
export const L1E_RESERVED_LO = 0x000001ff;

/** Standard L2 entry: bit 0 zero (v3), bits 9..55 offset, bit 62 compressed, bit 63 COPIED. */
export const L2E_OFFSET_MASK_HI = 0x00ffffff;
export const L2E_OFFSET_MASK_LO = 0xfffffe00;
export const L2E_COPIED_HI = 0x80000000;
export const L2E_COMPRESSED_HI = 0x40000000;
export const L2E_ZERO_LO = 0x00000001;
/** Reserved bits of a standard (uncompressed) L2 entry: 0x3f000000000001fe. */
export const L2E_STD_RESERVED_HI = 0x3f000000;
export const L2E_STD_RESERVED_LO = 0x000001fe;

/** Refcount table entry: bits 9..63 offset of a refcount block, bits 0..8 reserved. */
export const REFT_OFFSET_MASK_HI = 0xffffffff;
export const REFT_OFFSET_MASK_LO = 0xfffffe00;
export const REFT_RESERVED_LO = 0x000001ff;

/** Extended L2: 32 subclusters per cluster, entries of 16 bytes. */
export const SUBCLUSTERS_PER_CLUSTER = 32;
export const L2E_SIZE_NORMAL = 8;
export const L2E_SIZE_EXTENDED = 16;

export const SECTOR_SIZE = 512;

/** Snapshot table entry: fixed part. */
export const SNAPSHOT_ENTRY_FIXED_SIZE = 40;
/** Extra data QEMU writes for v3: vm_state_size_large, disk_size, icount. */
export const SNAPSHOT_EXTRA_DATA_QEMU = 24;
export const SNAPSHOT_EXTRA_DATA_V3_MIN = 16;

/** A bound on backing-chain depth (QEMU's own limit for chains is 16 * 1024 in bdrv_open). */
export const MAX_BACKING_DEPTH = 1000;
