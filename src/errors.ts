/**
 * Typed errors. Every failure the engine or the CLI reports carries a stable string `code`
 * (for scripts and tests) and structured `data` (the offending field, value, offset).
 */
export type ErrorData = Record<string, unknown>;

/**
 * Every code the engine and the CLI report, by family. One name per condition: synonyms were
 * merged (BAD_OPTION → INVALID_OPTION, SHRINK_NOT_ALLOWED → SHRINK_NEEDS_FLAG). Operating-system
 * failures carry the errno name (`E…`).
 */
export type ErrorCode =
  // arguments and options
  | 'INVALID_OPTION'
  | 'BAD_CLUSTER_SIZE'
  | 'BAD_REFCOUNT_BITS'
  | 'BAD_SIZE'
  | 'IMAGE_TOO_BIG'
  | 'OUT_OF_RANGE'
  | 'SHRINK_NEEDS_FLAG'
  | 'UNALIGNED_COMPRESSED_WRITE'
  | 'NO_SIZE'
  | 'NO_BACKING_FMT'
  | 'MISSING_SECRET'
  | 'BAD_PASSWORD'
  // image state
  | 'CLOSED'
  | 'READ_ONLY'
  | 'IMAGE_CORRUPT'
  | 'DIRTY_REPAIR_FAILED'
  | 'NO_BACKING'
  | 'BACKING_LOOP'
  | 'BACKING_TOO_DEEP'
  | 'NO_SNAPSHOTS'
  | 'SNAPSHOT_EXISTS'
  | 'SNAPSHOT_NOT_FOUND'
  | 'REFCOUNT_OVERFLOW'
  | 'REFTABLE_LIMIT'
  | 'BLOCK_STATUS'
  // not supported
  | 'UNSUPPORTED'
  | 'UNSUPPORTED_VERSION'
  | 'UNKNOWN_INCOMPAT_FEATURE'
  | 'UNKNOWN_COMPRESSION_TYPE'
  | 'NO_COMPRESSION'
  | 'RESIZE_WITH_SNAPSHOTS'
  | 'COMPRESSED_DATA_FILE'
  | 'COMPRESSED_ENCRYPTED'
  | 'SNAPSHOT_DATA_FILE'
  // header fields
  | 'BAD_MAGIC'
  | 'TRUNCATED_HEADER'
  | 'BAD_HEADER_LENGTH'
  | 'HEADER_TOO_LARGE'
  | 'BAD_CLUSTER_BITS'
  | 'BAD_REFCOUNT_ORDER'
  | 'BAD_CRYPT_METHOD'
  | 'BAD_COMPRESSION_TYPE'
  | 'BAD_EXTENSION'
  | 'BAD_L1_OFFSET'
  | 'BAD_REFTABLE'
  | 'BAD_REFTABLE_OFFSET'
  | 'BAD_SNAPSHOT_OFFSET'
  | 'BACKING_NAME_TOO_LONG'
  | 'BAD_BACKING_OFFSET'
  | 'DATA_FILE_RAW_WITHOUT_DATA_FILE'
  | 'NOT_IN_CHAIN'
  | 'BAD_JSON'
  | 'UNKNOWN_DRIVER'
  | 'WRONG_FILE_KIND'
  | 'L1_TOO_LARGE'
  | 'L1_TOO_SMALL'
  | 'REFTABLE_TOO_LARGE'
  | 'MISSING_DATA_FILE'
  | 'MISSING_CRYPTO_HEADER'
  | 'CRYPTO_EXT_BAD'
  // corrupt metadata (CorruptionError: with the host offset)
  | 'CORRUPT_L1'
  | 'CORRUPT_L2'
  | 'CORRUPT_SUBCLUSTER'
  | 'CORRUPT_REFTABLE'
  | 'CORRUPT_SNAPSHOT_L1'
  | 'CORRUPT_CRYPTO_HEADER'
  | 'REFCOUNT_OVERLAP'
  | 'REFCOUNT_UNDERFLOW'
  | 'COMPRESSED_OUT_OF_RANGE'
  | 'COMPRESSED_BAD_DATA'
  | 'COMPRESSED_SHORT'
  | 'COMPRESSED_TOO_LONG'
  | 'TRUNCATED_SNAPSHOT_TABLE'
  | 'TOO_MANY_SNAPSHOTS'
  | 'SNAPSHOT_TABLE_TOO_LARGE'
  | 'SNAPSHOT_NAME_TOO_LONG'
  | 'SNAPSHOT_EXTRA_LAYOUT'
  | 'SNAPSHOT_EXTRA_TOO_LARGE'
  | 'SNAPSHOT_INCOMPLETE'
  | 'SNAPSHOT_L1_TOO_LARGE'
  | 'SNAPSHOT_L1_UNALIGNED'
  | 'TOO_MANY_BITMAPS'
  | 'BITMAPS_EXT_EMPTY'
  | 'BITMAP_BAD_FLAGS'
  | 'BITMAP_BAD_GRANULARITY'
  | 'BITMAP_BAD_TABLE'
  | 'BITMAP_BAD_TYPE'
  | 'BITMAP_COUNT_MISMATCH'
  | 'BITMAP_DIRECTORY_EMPTY'
  | 'BITMAP_DIRECTORY_TOO_LARGE'
  | 'BITMAP_DIRECTORY_TRUNCATED'
  | 'BITMAP_DIRECTORY_UNALIGNED'
  | 'BITMAP_EXTRA_DATA'
  | 'BITMAP_NAME_TOO_LONG'
  | 'BITMAP_TABLE_RESERVED'
  | 'BITMAP_TABLE_TOO_SMALL'
  | 'BITMAP_TABLE_TRUNCATED'
  | 'BITMAP_TABLE_UNALIGNED'
  | 'BITMAP_TOO_LARGE'
  // qemu-img bitmap operations and live bitmaps
  | 'BITMAP_EXISTS'
  | 'BITMAP_NOT_FOUND'
  | 'BITMAP_INCONSISTENT'
  | 'BITMAPS_V2'
  | 'BITMAPS_UNSUPPORTED'
  | 'SNAPSHOT_WITH_BITMAPS'
  // codecs and encryption
  | 'COMPRESS_FAILED'
  | 'ZSTD_INIT_FAILED'
  | 'CIPHER_KEY_SIZE'
  | 'CRYPTO_BAD_SECTOR'
  | 'CRYPTO_UNALIGNED'
  | 'ESSIV_HASH'
  | 'LUKS_BAD_HEADER'
  | 'LUKS_BAD_ITERATIONS'
  | 'LUKS_BAD_KEY'
  | 'LUKS_BAD_MAGIC'
  | 'LUKS_BAD_VERSION'
  | 'LUKS_FIELD_TOO_LONG'
  | 'LUKS_UNSUPPORTED_CIPHER'
  | 'LUKS_UNSUPPORTED_HASH'
  // image locking (io/lock.ts, QEMU's OFD byte-range locks)
  | 'IMAGE_LOCKED'
  | 'IMAGE_LOCK_FAILED'
  | 'LOCKING_UNAVAILABLE'
  | 'FORCE_SHARE_READ_WRITE'
  | 'BAD_LOCKING_OPTION'
  // operating system (errno names: ENOENT, EACCES, EROFS, EFBIG, EISDIR, EOPEN, ECREATE, ...)
  | `E${Uppercase<string>}`;

export class Qcow2Error extends Error {
  readonly code: ErrorCode;
  readonly data: ErrorData;

  constructor(code: ErrorCode, message: string, data: ErrorData = {}) {
    super(message);
    this.name = 'Qcow2Error';
    this.code = code;
    this.data = data;
  }
}

/** Metadata that contradicts the format: carries the host offset where it was found. */
export class CorruptionError extends Qcow2Error {
  readonly offset: number;

  constructor(code: ErrorCode, message: string, offset: number, data: ErrorData = {}) {
    super(code, `${message} (at host offset 0x${offset.toString(16)})`, { ...data, offset });
    this.name = 'CorruptionError';
    this.offset = offset;
  }
}

/** A header field QEMU would refuse at open time. */
export class HeaderError extends Qcow2Error {
  constructor(code: ErrorCode, message: string, field: string, value: unknown) {
    super(code, message, { field, value });
    this.name = 'HeaderError';
  }
}

/** The image uses something this engine does not (yet) handle. */
export class UnsupportedError extends Qcow2Error {
  constructor(code: ErrorCode, message: string, data: ErrorData = {}) {
    super(code, message, data);
    this.name = 'UnsupportedError';
  }
}

/** A caller passed something out of range (guest offset beyond the disk, bad option, ...). */
export class ArgumentError extends Qcow2Error {
  constructor(code: ErrorCode, message: string, data: ErrorData = {}) {
    super(code, message, data);
    this.name = 'ArgumentError';
  }
}

/** An operating-system level failure (open, read, write), with the path and operation. */
export class IoError extends Qcow2Error {
  constructor(code: ErrorCode, message: string, data: ErrorData = {}) {
    super(code, message, data);
    this.name = 'IoError';
  }
}

export function isQcow2Error(e: unknown): e is Qcow2Error {
  return e instanceof Qcow2Error;
}
