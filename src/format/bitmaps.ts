/**
 * Persistent dirty bitmaps (qcow2.txt "Bitmaps"): the bitmap directory and bitmap table entries.
 * Decode, encode, validate. Pure: no I/O.
 *
 * Directory entry (8-aligned at its start; padded to 8 after the name):
 *
 *   0  bitmap_table_offset u64   host offset of the bitmap table (cluster-aligned)
 *   8  bitmap_table_size   u32   number of u64 entries in the bitmap table
 *  12  flags               u32   bit 0 in_use, bit 1 auto, bit 2 extra_data_compatible
 *  16  type                u8    1 = dirty tracking bitmap
 *  17  granularity_bits    u8
 *  18  name_size           u16   name bytes (UTF-8, no NUL)
 *  20  extra_data_size     u32
 *  24  extra data (kept byte for byte), name, padding to a multiple of 8
 *
 * Bitmap table entry (u64): bits 9..55 host offset of a data cluster (0: none), bit 0 "all ones"
 * (only meaningful when the offset is 0), bits 1..8 and 56..63 reserved.
 *
 * `decodeBitmapDirectory` checks only what the layout needs (truncation, entry count against the
 * bitmaps extension); `validateBitmapEntry` adds QEMU's limits (block/qcow2-bitmap.c,
 * check_dir_entry / bitmap_list_load) and `validateBitmapsExtension` the extension-level ones
 * (block/qcow2.c, the bitmaps extension case of qcow2_read_extensions).
 */
import { CorruptionError, type ErrorCode } from '../errors.ts';
import { setU16, setU32, setU64, textDecoder, textEncoder, u16, u32, u64 } from './bytes.ts';

/** Fixed part of a directory entry. */
export const BITMAP_DIR_ENTRY_FIXED_SIZE = 24;

export const BME_FLAG_IN_USE = 1 << 0;
export const BME_FLAG_AUTO = 1 << 1;
export const BME_FLAG_EXTRA_DATA_COMPATIBLE = 1 << 2;
/** Flags QEMU 7.2 knows; any other bit (including extra_data_compatible) fails its open. */
export const BME_QEMU_KNOWN_FLAGS = BME_FLAG_IN_USE | BME_FLAG_AUTO;

export const BITMAP_TYPE_DIRTY_TRACKING = 1;

// QEMU's limits (block/qcow2.h, block/qcow2-bitmap.c).
export const BME_MAX_TABLE_SIZE = 0x8000000;
export const BME_MAX_PHYS_SIZE = 0x20000000;
export const BME_MIN_GRANULARITY_BITS = 9;
export const BME_MAX_GRANULARITY_BITS = 31;
export const BME_MAX_NAME_SIZE = 1023;
export const QCOW2_MAX_BITMAPS = 65535;
export const QCOW2_MAX_BITMAP_DIRECTORY_SIZE = 1024 * QCOW2_MAX_BITMAPS;

// Bitmap table entry masks, on the two 32-bit halves (HI = bits 32..63, LO = bits 0..31).
export const BMTE_OFFSET_MASK_HI = 0x00ffffff;
export const BMTE_OFFSET_MASK_LO = 0xfffffe00;
export const BMTE_RESERVED_HI = 0xff000000;
export const BMTE_RESERVED_LO = 0x000001fe;
export const BMTE_ALL_ONES_LO = 0x00000001;
export const BITMAP_TABLE_ENTRY_SIZE = 8;

export interface BitmapDirectoryEntry {
  bitmapTableOffset: number;
  /** Number of u64 entries of the bitmap table. */
  bitmapTableSize: number;
  /** The raw flags word (known and unknown bits). */
  flags: number;
  type: number;
  granularityBits: number;
  /** The name as stored (UTF-8 bytes decoded; `nameBytes` keeps the exact bytes). */
  name: string;
  nameBytes: Uint8Array;
  /** Extra data, byte for byte (QEMU 7.2 writes none and refuses any). */
  extraData: Uint8Array;
}

export interface BitmapDecodeOptions {
  /** Host offset of the directory, for error offsets (default 0). */
  directoryOffset?: number;
}

function corrupt(
  code: ErrorCode,
  message: string,
  offset: number,
  data: Record<string, unknown> = {},
): CorruptionError {
  return new CorruptionError(code, message, offset, data);
}

const align8 = (v: number): number => Math.ceil(v / 8) * 8;

/** Encoded size of one entry, padding included (QEMU's calc_dir_entry_size). */
export function bitmapEntrySize(e: Pick<BitmapDirectoryEntry, 'nameBytes' | 'extraData'>): number {
  return align8(BITMAP_DIR_ENTRY_FIXED_SIZE + e.extraData.length + e.nameBytes.length);
}

/** Size of the whole directory (what bitmap_directory_size holds). */
export function bitmapDirectorySize(entries: readonly BitmapDirectoryEntry[]): number {
  return entries.reduce((n, e) => n + bitmapEntrySize(e), 0);
}

/**
 * Decode the entry at `off` of a directory and its padded size; undefined when its fixed part is
 * cut off. Name and extra data are cut short when the entry overruns `b` (the checker's walk
 * tolerates that; `decodeBitmapDirectory` refuses it).
 */
export function decodeBitmapDirectoryEntry(
  b: Uint8Array,
  off: number,
): { entry: BitmapDirectoryEntry; size: number } | undefined {
  if (off + BITMAP_DIR_ENTRY_FIXED_SIZE > b.length) return undefined;
  const extraSize = u32(b, off + 20);
  const nameSize = u16(b, off + 18);
  const size = align8(BITMAP_DIR_ENTRY_FIXED_SIZE + extraSize + nameSize);
  const extraStart = off + BITMAP_DIR_ENTRY_FIXED_SIZE;
  const nameStart = extraStart + extraSize;
  const nameBytes = b.slice(nameStart, nameStart + nameSize);
  const entry: BitmapDirectoryEntry = {
    bitmapTableOffset: u64(b, off),
    bitmapTableSize: u32(b, off + 8),
    flags: u32(b, off + 12),
    type: b[off + 16]!,
    granularityBits: b[off + 17]!,
    name: textDecoder.decode(nameBytes),
    nameBytes,
    extraData: b.slice(extraStart, nameStart),
  };
  return { entry, size };
}

/**
 * Decode a directory of `nbBitmaps` entries from `b` (exactly bitmap_directory_size bytes, from
 * bitmap_directory_offset). Throws CorruptionError (with the host offset) when an entry is
 * truncated, when there are more or fewer entries than `nbBitmaps`, or when bytes are left over.
 */
export function decodeBitmapDirectory(
  b: Uint8Array,
  nbBitmaps: number,
  opts: BitmapDecodeOptions = {},
): BitmapDirectoryEntry[] {
  const base = opts.directoryOffset ?? 0;
  if (b.length === 0)
    throw corrupt('BITMAP_DIRECTORY_EMPTY', 'Requested bitmap directory size is zero', base);
  const out: BitmapDirectoryEntry[] = [];
  let off = 0;
  while (off < b.length) {
    if (off + BITMAP_DIR_ENTRY_FIXED_SIZE > b.length) {
      throw corrupt(
        'BITMAP_DIRECTORY_TRUNCATED',
        `Broken bitmap directory: entry ${out.length} truncated in its fixed part`,
        base + off,
        { index: out.length },
      );
    }
    if (out.length >= nbBitmaps) {
      throw corrupt(
        'BITMAP_COUNT_MISMATCH',
        `More bitmaps found than specified in header extension (${nbBitmaps})`,
        base + off,
        { nbBitmaps },
      );
    }
    const { entry, size } = decodeBitmapDirectoryEntry(b, off)!;
    if (off + size > b.length) {
      throw corrupt(
        'BITMAP_DIRECTORY_TRUNCATED',
        `Broken bitmap directory: entry ${out.length} (${size} bytes) overruns the directory`,
        base + off,
        {
          index: out.length,
          entrySize: size,
          available: b.length - off,
        },
      );
    }
    out.push(entry);
    off += size;
  }
  if (out.length !== nbBitmaps) {
    throw corrupt(
      'BITMAP_COUNT_MISMATCH',
      `Less bitmaps found than specified in header extension (${out.length} < ${nbBitmaps})`,
      base,
      { nbBitmaps, found: out.length },
    );
  }
  return out;
}

/** Encode a directory: entries back to back, each padded to 8 (padding bytes zero). */
export function encodeBitmapDirectory(entries: readonly BitmapDirectoryEntry[]): Uint8Array {
  const out = new Uint8Array(bitmapDirectorySize(entries));
  let off = 0;
  for (const e of entries) {
    setU64(out, off, e.bitmapTableOffset);
    setU32(out, off + 8, e.bitmapTableSize);
    setU32(out, off + 12, e.flags >>> 0);
    out[off + 16] = e.type;
    out[off + 17] = e.granularityBits;
    setU16(out, off + 18, e.nameBytes.length);
    setU32(out, off + 20, e.extraData.length);
    out.set(e.extraData, off + BITMAP_DIR_ENTRY_FIXED_SIZE);
    out.set(e.nameBytes, off + BITMAP_DIR_ENTRY_FIXED_SIZE + e.extraData.length);
    off += bitmapEntrySize(e);
  }
  return out;
}

/** A new entry as QEMU writes it (no extra data). */
export function newBitmapEntry(opts: {
  name: string;
  granularityBits: number;
  bitmapTableOffset: number;
  bitmapTableSize: number;
  flags?: number;
}): BitmapDirectoryEntry {
  const nameBytes = textEncoder.encode(opts.name);
  return {
    bitmapTableOffset: opts.bitmapTableOffset,
    bitmapTableSize: opts.bitmapTableSize,
    flags: opts.flags ?? BME_FLAG_AUTO,
    type: BITMAP_TYPE_DIRTY_TRACKING,
    granularityBits: opts.granularityBits,
    name: opts.name,
    nameBytes,
    extraData: new Uint8Array(0),
  };
}

export interface BitmapValidateContext {
  clusterSize: number;
  /** Virtual disk size in bytes. */
  diskSize: number;
  /** Host offset of the entry, for the error. */
  entryOffset?: number;
}

/** Number of u64 bitmap table entries a bitmap of this granularity needs for the disk. */
export function bitmapTableEntriesNeeded(
  diskSize: number,
  granularityBits: number,
  clusterSize: number,
): number {
  const bits = Math.ceil(diskSize / 2 ** granularityBits);
  const bytes = Math.ceil(bits / 8);
  return Math.ceil(bytes / clusterSize);
}

/**
 * QEMU's rules for an entry (bitmap_list_load + check_dir_entry): no extra data, a non-empty
 * cluster-aligned table within BME_MAX_TABLE_SIZE entries, granularity bits 9..31, no unknown flag,
 * a name of at most 1023 bytes, type 1, at most BME_MAX_PHYS_SIZE bytes of bitmap data, and (when
 * not in use) a table large enough for the disk.
 */
export function validateBitmapEntry(e: BitmapDirectoryEntry, ctx: BitmapValidateContext): void {
  const at = ctx.entryOffset ?? 0;
  const fail = (code: ErrorCode, why: string, data: Record<string, unknown>): never => {
    throw corrupt(code, `Bitmap '${e.name}' doesn't satisfy the constraints: ${why}`, at, {
      name: e.name,
      ...data,
    });
  };
  if (e.extraData.length !== 0)
    fail('BITMAP_EXTRA_DATA', 'bitmap extra data is not supported', { extraDataSize: e.extraData.length });
  if (e.bitmapTableSize === 0) fail('BITMAP_BAD_TABLE', 'empty bitmap table', { bitmapTableSize: 0 });
  if (e.bitmapTableOffset === 0 || e.bitmapTableOffset % ctx.clusterSize !== 0) {
    fail(
      'BITMAP_BAD_TABLE',
      `bitmap table offset 0x${e.bitmapTableOffset.toString(16)} is not a cluster boundary`,
      { bitmapTableOffset: e.bitmapTableOffset },
    );
  }
  if (e.bitmapTableSize > BME_MAX_TABLE_SIZE)
    fail('BITMAP_BAD_TABLE', `bitmap table of ${e.bitmapTableSize} entries is too large`, {
      bitmapTableSize: e.bitmapTableSize,
    });
  if (e.granularityBits < BME_MIN_GRANULARITY_BITS || e.granularityBits > BME_MAX_GRANULARITY_BITS) {
    fail(
      'BITMAP_BAD_GRANULARITY',
      `granularity bits ${e.granularityBits} outside ${BME_MIN_GRANULARITY_BITS}..${BME_MAX_GRANULARITY_BITS}`,
      { granularityBits: e.granularityBits },
    );
  }
  if ((e.flags & ~BME_QEMU_KNOWN_FLAGS) !== 0)
    fail('BITMAP_BAD_FLAGS', `reserved flags 0x${(e.flags >>> 0).toString(16)}`, { flags: e.flags >>> 0 });
  if (e.nameBytes.length > BME_MAX_NAME_SIZE)
    fail('BITMAP_NAME_TOO_LONG', `name of ${e.nameBytes.length} bytes (max ${BME_MAX_NAME_SIZE})`, {
      nameSize: e.nameBytes.length,
    });
  if (e.type !== BITMAP_TYPE_DIRTY_TRACKING)
    fail('BITMAP_BAD_TYPE', `unknown type ${e.type}`, { type: e.type });
  const physBytes = e.bitmapTableSize * ctx.clusterSize;
  if (physBytes > BME_MAX_PHYS_SIZE)
    fail('BITMAP_TOO_LARGE', `${physBytes} bytes of bitmap data`, { physBytes });
  if ((e.flags & BME_FLAG_IN_USE) === 0 && ctx.diskSize > physBytes * 8 * 2 ** e.granularityBits) {
    fail(
      'BITMAP_TABLE_TOO_SMALL',
      `a table of ${e.bitmapTableSize} entries cannot cover ${ctx.diskSize} bytes`,
      { bitmapTableSize: e.bitmapTableSize },
    );
  }
}

/** Validate every entry of a decoded directory (host offsets from `directoryOffset`). */
export function validateBitmapDirectory(
  entries: readonly BitmapDirectoryEntry[],
  ctx: Omit<BitmapValidateContext, 'entryOffset'> & { directoryOffset?: number },
): void {
  let off = ctx.directoryOffset ?? 0;
  for (const e of entries) {
    validateBitmapEntry(e, { ...ctx, entryOffset: off });
    off += bitmapEntrySize(e);
  }
}

/** QEMU's checks on the bitmaps header extension's values (before the directory is read). */
export function validateBitmapsExtension(
  ext: { nbBitmaps: number; bitmapDirectorySize: number; bitmapDirectoryOffset: number },
  clusterSize: number,
): void {
  if (ext.nbBitmaps > QCOW2_MAX_BITMAPS) {
    throw corrupt(
      'TOO_MANY_BITMAPS',
      `Image has ${ext.nbBitmaps} bitmaps, exceeding the QEMU supported maximum of ${QCOW2_MAX_BITMAPS}`,
      0,
      { nbBitmaps: ext.nbBitmaps },
    );
  }
  if (ext.nbBitmaps === 0)
    throw corrupt('BITMAPS_EXT_EMPTY', 'Found bitmaps extension with zero bitmaps', 0, { nbBitmaps: 0 });
  if (ext.bitmapDirectoryOffset % clusterSize !== 0) {
    throw corrupt(
      'BITMAP_DIRECTORY_UNALIGNED',
      'Invalid bitmap directory offset',
      ext.bitmapDirectoryOffset,
      { bitmapDirectoryOffset: ext.bitmapDirectoryOffset },
    );
  }
  if (ext.bitmapDirectorySize > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
    throw corrupt(
      'BITMAP_DIRECTORY_TOO_LARGE',
      `Bitmap directory size (${ext.bitmapDirectorySize}) exceeds the maximum supported size (${QCOW2_MAX_BITMAP_DIRECTORY_SIZE})`,
      ext.bitmapDirectoryOffset,
      {
        bitmapDirectorySize: ext.bitmapDirectorySize,
      },
    );
  }
}

// ---- bitmap table entries ----

export type BitmapTableEntry =
  /** No data cluster: the covered bits read as zeros, or as ones with `allOnes`. */
  | { kind: 'unallocated'; allOnes: boolean }
  /** A data cluster at `offset`. */
  | { kind: 'data'; offset: number };

/**
 * Decode one bitmap table entry (the u64 at `off` of `b`). Throws CorruptionError for reserved
 * bits, for bit 0 set with an offset, and (with `clusterSize`) for an unaligned offset.
 * `hostOffset` is where the entry lives, for the error.
 */
export function decodeBitmapTableEntry(
  b: Uint8Array,
  off: number,
  opts: { clusterSize?: number; hostOffset?: number } = {},
): BitmapTableEntry {
  const hi = u32(b, off);
  const lo = u32(b, off + 4);
  const at = opts.hostOffset ?? off;
  if ((hi & BMTE_RESERVED_HI) !== 0 || (lo & BMTE_RESERVED_LO) !== 0) {
    throw corrupt(
      'BITMAP_TABLE_RESERVED',
      `Bitmap table entry 0x${hi.toString(16).padStart(8, '0')}${lo.toString(16).padStart(8, '0')} has reserved bits set`,
      at,
      { hi, lo },
    );
  }
  const offset = (hi & BMTE_OFFSET_MASK_HI) * 0x100000000 + ((lo & BMTE_OFFSET_MASK_LO) >>> 0);
  const allOnes = (lo & BMTE_ALL_ONES_LO) !== 0;
  if (offset === 0) return { kind: 'unallocated', allOnes };
  if (allOnes)
    throw corrupt(
      'BITMAP_TABLE_RESERVED',
      `Bitmap table entry with offset 0x${offset.toString(16)} has bit 0 set`,
      at,
      { offset },
    );
  if (opts.clusterSize !== undefined && offset % opts.clusterSize !== 0) {
    throw corrupt(
      'BITMAP_TABLE_UNALIGNED',
      `Bitmap data cluster offset 0x${offset.toString(16)} is not cluster-aligned`,
      at,
      { offset },
    );
  }
  return { kind: 'data', offset };
}

export function encodeBitmapTableEntry(e: BitmapTableEntry, b: Uint8Array, off: number): void {
  if (e.kind === 'unallocated') {
    setU32(b, off, 0);
    setU32(b, off + 4, e.allOnes ? BMTE_ALL_ONES_LO : 0);
    return;
  }
  setU64(b, off, e.offset);
}

/** Decode a whole bitmap table of `size` entries. */
export function decodeBitmapTable(
  b: Uint8Array,
  size: number,
  opts: { clusterSize?: number; tableOffset?: number } = {},
): BitmapTableEntry[] {
  const base = opts.tableOffset ?? 0;
  if (b.length < size * BITMAP_TABLE_ENTRY_SIZE) {
    throw corrupt(
      'BITMAP_TABLE_TRUNCATED',
      `Bitmap table of ${size} entries needs ${size * BITMAP_TABLE_ENTRY_SIZE} bytes, got ${b.length}`,
      base,
      { size },
    );
  }
  const out: BitmapTableEntry[] = [];
  for (let i = 0; i < size; i++)
    out.push(decodeBitmapTableEntry(b, i * 8, { clusterSize: opts.clusterSize, hostOffset: base + i * 8 }));
  return out;
}

export function encodeBitmapTable(entries: readonly BitmapTableEntry[]): Uint8Array {
  const out = new Uint8Array(entries.length * BITMAP_TABLE_ENTRY_SIZE);
  entries.forEach((e, i) => encodeBitmapTableEntry(e, out, i * 8));
  return out;
}
