/**
 * The internal snapshot table (qcow2.txt "Snapshots"): decode, encode, size. Pure: no I/O.
 *
 * Each entry: a 40-byte fixed part (L1 offset u64, L1 size u32, id length u16, name length u16,
 * date seconds u32, date nanoseconds u32, VM clock u64, VM state size u32, extra data size u32),
 * the extra data, the id, the name, then padding so that the next entry starts at a multiple of 8.
 * Known extra data (in this order, each present only if the extra data is long enough):
 * vm_state_size_large u64, disk_size u64, icount u64 (-1 when unused). Bytes after the last
 * complete known field are kept verbatim in `unknownExtraData`.
 *
 * Sizes follow QEMU (qcow2_read_snapshots / qcow2_write_snapshots): an entry is aligned to 8 at its
 * start, so the table's size excludes the padding after the last entry.
 */
import { CorruptionError, Qcow2Error, type ErrorCode } from '../errors.ts';
import { setU16, setU32, setU64, setU64n, textDecoder, textEncoder, u16, u32, u64, u64n } from './bytes.ts';
import * as C from './constants.ts';

export interface SnapshotEntry {
  l1TableOffset: number;
  /** The exact offset when it exceeds 2^53 (`l1TableOffset` is then rounded): a corrupt entry. */
  l1TableOffsetExact?: bigint;
  /** Number of L1 entries. */
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  /** VM clock in nanoseconds (u64). */
  vmClockNsec: bigint;
  /** The 32-bit vm_state_size field. */
  vmStateSize: number;
  /** Extra data field 0..7, if the extra data holds it. */
  vmStateSizeLarge?: number;
  /** Extra data field 8..15 (virtual disk size at snapshot time), if present. */
  diskSize?: number;
  /**
   * Extra data field 16..23, if present: the instruction count, as a signed value; QEMU writes -1n
   * when record/replay is not used. `undefined` means the field is absent (extra data < 24 bytes).
   */
  icount?: bigint;
  /** Extra data bytes after the last complete known field, kept byte for byte. */
  unknownExtraData: Uint8Array;
}

export interface SnapshotDecodeOptions {
  /** Cluster bits of the image: enables the L1 alignment check. */
  clusterBits?: number;
  /** Host offset of the table, for error messages (default 0). */
  tableOffset?: number;
  /**
   * Checker mode: do not throw for per-entry problems QEMU's checker reports instead of refusing
   * (v3 extra data < 16 bytes, unaligned or oversized L1 tables).
   */
  lenient?: boolean;
  /**
   * `check -r all` (qcow2_do_read_snapshots with repair): extra data past QCOW_MAX_SNAPSHOT_EXTRA_DATA
   * is cut to that size and the entries from the one that makes the table too big on are dropped,
   * each noted in `report` instead of refused.
   */
  repair?: boolean;
  /** Filled in by the decoder: what a repairing read discarded, and the bytes the table spans. */
  report?: SnapshotTableReport;
}

/** What a snapshot table read found (see SnapshotDecodeOptions.report). */
export interface SnapshotTableReport {
  /** QEMU's stderr lines for what was discarded ("Discarding ..."). */
  messages: string[];
  /** Entries whose extra data was cut to QCOW_MAX_SNAPSHOT_EXTRA_DATA bytes. */
  extraDataDropped: number;
  /** Entries dropped off the end because the table was too big. */
  overhanging: number;
  /** Bytes from the table's start to the end of the last entry kept, as stored (full extra data). */
  span: number;
}

const MAX_L1_ENTRIES = C.QCOW_MAX_L1_SIZE / 8;

/** Bytes of extra data an entry encodes to. */
export function snapshotExtraDataSize(e: SnapshotEntry): number {
  let n = 0;
  if (e.vmStateSizeLarge !== undefined) n = 8;
  if (e.diskSize !== undefined) n = 16;
  if (e.icount !== undefined) n = 24;
  return n + e.unknownExtraData.length;
}

/** Encoded size of one entry, without trailing padding. */
export function snapshotEntrySize(e: SnapshotEntry): number {
  return (
    C.SNAPSHOT_ENTRY_FIXED_SIZE +
    snapshotExtraDataSize(e) +
    textEncoder.encode(e.id).length +
    textEncoder.encode(e.name).length
  );
}

/** Size of the encoded table as QEMU counts it (snapshots_size): entries start 8-aligned, no final padding. */
export function snapshotTableSize(entries: readonly SnapshotEntry[]): number {
  let off = 0;
  for (const e of entries) off = alignTo8(off) + snapshotEntrySize(e);
  return off;
}

function alignTo8(v: number): number {
  return Math.ceil(v / 8) * 8;
}

function corrupt(
  code: ErrorCode,
  message: string,
  offset: number,
  data: Record<string, unknown> = {},
): CorruptionError {
  return new CorruptionError(code, message, offset, data);
}

/** Problems QEMU's checker reports for an entry (aligned L1, L1 size limit); empty when fine. */
export function snapshotEntryProblems(e: SnapshotEntry, clusterBits: number): string[] {
  const out: string[] = [];
  if (e.l1TableOffset % 2 ** clusterBits !== 0) out.push('l1_unaligned');
  if (e.l1Size > MAX_L1_ENTRIES) out.push('l1_too_large');
  return out;
}

/**
 * Decode `nbSnapshots` entries from `b` (the bytes starting at snapshots_offset). Throws
 * CorruptionError for a truncated table and for QEMU's open-time limits.
 */
export function decodeSnapshotTable(
  b: Uint8Array,
  nbSnapshots: number,
  version: 2 | 3,
  opts: SnapshotDecodeOptions = {},
): SnapshotEntry[] {
  const base = opts.tableOffset ?? 0;
  if (nbSnapshots > C.QCOW_MAX_SNAPSHOTS) {
    throw corrupt(
      'TOO_MANY_SNAPSHOTS',
      `Too many snapshots (${nbSnapshots} > ${C.QCOW_MAX_SNAPSHOTS})`,
      base,
      { nbSnapshots },
    );
  }
  const out: SnapshotEntry[] = [];
  let off = 0;
  let tableLength = 0;
  for (let i = 0; i < nbSnapshots; i++) {
    const preEntry = off;
    off = alignTo8(off);
    const need = (n: number, what: string): void => {
      if (off + n > b.length) {
        throw corrupt(
          'TRUNCATED_SNAPSHOT_TABLE',
          `Snapshot table truncated in entry ${i} (${what})`,
          base + off,
          { index: i, needed: n, available: b.length - off },
        );
      }
    };
    need(C.SNAPSHOT_ENTRY_FIXED_SIZE, 'fixed part');
    const l1TableOffset = u64(b, off);
    const l1TableOffsetExact = u64n(b, off);
    const l1Size = u32(b, off + 8);
    const idLen = u16(b, off + 12);
    const nameLen = u16(b, off + 14);
    const dateSec = u32(b, off + 16);
    const dateNsec = u32(b, off + 20);
    const vmClockNsec = u64n(b, off + 24);
    const vmStateSize = u32(b, off + 32);
    const extraSize = u32(b, off + 36);
    const entryOffset = base + off;
    off += C.SNAPSHOT_ENTRY_FIXED_SIZE;
    // QEMU refuses more than QCOW_MAX_SNAPSHOT_EXTRA_DATA (1024) bytes of extra data per entry;
    // a repairing read keeps the first 1024 bytes and skips the rest.
    let keptExtra = extraSize;
    if (extraSize > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
      if (!opts.repair) {
        throw new Qcow2Error(
          'SNAPSHOT_EXTRA_TOO_LARGE',
          `Too much extra metadata in snapshot table entry ${i}`,
          {
            index: i,
            extraDataSize: extraSize,
            offset: entryOffset,
            hint: 'You can force-remove this extra metadata with qemu-img check -r all\n',
          },
        );
      }
      opts.report?.messages.push(
        `Discarding too much extra metadata in snapshot table entry ${i} (${extraSize} > ${C.QCOW_MAX_SNAPSHOT_EXTRA_DATA})`,
      );
      if (opts.report) opts.report.extraDataDropped++;
      keptExtra = C.QCOW_MAX_SNAPSHOT_EXTRA_DATA;
    }
    // v3 requires vm_state_size_large and disk_size (qcow2.txt: "at least 16 bytes").
    if (version >= 3 && extraSize < C.SNAPSHOT_EXTRA_DATA_V3_MIN && !opts.lenient) {
      throw corrupt(
        'SNAPSHOT_INCOMPLETE',
        `Snapshot table entry ${i} is incomplete (extra data ${extraSize} < 16 bytes)`,
        entryOffset,
        { index: i, extraDataSize: extraSize },
      );
    }
    need(extraSize, 'extra data');
    const e: SnapshotEntry = {
      l1TableOffset,
      ...(l1TableOffset > Number.MAX_SAFE_INTEGER ? { l1TableOffsetExact } : {}),
      l1Size,
      id: '',
      name: '',
      dateSec,
      dateNsec,
      vmClockNsec,
      vmStateSize,
      unknownExtraData: new Uint8Array(0),
    };
    let known = 0;
    if (extraSize >= 8) {
      e.vmStateSizeLarge = u64(b, off);
      known = 8;
    }
    if (extraSize >= 16) {
      e.diskSize = u64(b, off + 8);
      known = 16;
    }
    if (extraSize >= 24) {
      e.icount = BigInt.asIntN(64, u64n(b, off + 16));
      known = 24;
    }
    e.unknownExtraData = b.slice(off + known, off + keptExtra);
    off += extraSize;
    need(idLen, 'id');
    e.id = textDecoder.decode(b.subarray(off, off + idLen));
    off += idLen;
    need(nameLen, 'name');
    e.name = textDecoder.decode(b.subarray(off, off + nameLen));
    off += nameLen;
    // QEMU's limit counts each entry with the extra data it keeps (QCOW_MAX_SNAPSHOTS_SIZE).
    tableLength = alignTo8(tableLength) + C.SNAPSHOT_ENTRY_FIXED_SIZE + keptExtra + idLen + nameLen;
    if (tableLength > C.QCOW_MAX_SNAPSHOTS_SIZE) {
      const over = nbSnapshots - i;
      if (!opts.repair) {
        throw new Qcow2Error('SNAPSHOT_TABLE_TOO_LARGE', 'Snapshot table is too big', {
          size: tableLength,
          offset: base,
          hint: `You can force-remove all ${over} overhanging snapshots with qemu-img check -r all\n`,
        });
      }
      opts.report?.messages.push(`Discarding ${over} overhanging snapshots (snapshot table is too big)`);
      if (opts.report) opts.report.overhanging += over;
      off = preEntry;
      break;
    }
    if (opts.clusterBits !== undefined && !opts.lenient) {
      if (e.l1TableOffset % 2 ** opts.clusterBits !== 0) {
        throw corrupt(
          'SNAPSHOT_L1_UNALIGNED',
          `Snapshot ${e.id} (${e.name}): L1 table offset 0x${l1TableOffset.toString(16)} is not cluster aligned`,
          entryOffset,
          { index: i, l1TableOffset },
        );
      }
    }
    if (e.l1Size > MAX_L1_ENTRIES && !opts.lenient) {
      throw corrupt(
        'SNAPSHOT_L1_TOO_LARGE',
        `Snapshot ${e.id} (${e.name}): L1 table is too large (${l1Size} entries)`,
        entryOffset,
        { index: i, l1Size },
      );
    }
    out.push(e);
  }
  if (opts.report) opts.report.span = off;
  return out;
}

/** Encode entries into a table of `snapshotTableSize(entries)` bytes. Validates QEMU's limits. */
export function encodeSnapshotTable(entries: readonly SnapshotEntry[], version: 2 | 3): Uint8Array {
  if (entries.length > C.QCOW_MAX_SNAPSHOTS) {
    throw corrupt('TOO_MANY_SNAPSHOTS', `Too many snapshots (${entries.length})`, 0, {
      nbSnapshots: entries.length,
    });
  }
  const size = snapshotTableSize(entries);
  if (size > C.QCOW_MAX_SNAPSHOTS_SIZE) {
    throw corrupt('SNAPSHOT_TABLE_TOO_LARGE', `Snapshot table is too big (${size} bytes)`, 0, { size });
  }
  const b = new Uint8Array(size);
  let off = 0;
  entries.forEach((e, i) => {
    off = alignTo8(off);
    const extra = snapshotExtraDataSize(e);
    if (extra > C.QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
      throw corrupt(
        'SNAPSHOT_EXTRA_TOO_LARGE',
        `Too much extra metadata in snapshot ${i} (${extra} bytes)`,
        off,
        { index: i, extraDataSize: extra },
      );
    }
    if (version >= 3 && extra < C.SNAPSHOT_EXTRA_DATA_V3_MIN) {
      throw corrupt(
        'SNAPSHOT_INCOMPLETE',
        `Snapshot ${i} needs at least 16 bytes of extra data in a v3 image`,
        off,
        { index: i, extraDataSize: extra },
      );
    }
    if (e.l1Size > MAX_L1_ENTRIES) {
      throw corrupt('SNAPSHOT_L1_TOO_LARGE', `Snapshot ${i}: L1 table too large (${e.l1Size} entries)`, off, {
        index: i,
        l1Size: e.l1Size,
      });
    }
    // Known fields form a prefix of the extra data: disk_size needs vm_state_size_large, etc.
    const hasGaps =
      (e.diskSize !== undefined && e.vmStateSizeLarge === undefined) ||
      (e.icount !== undefined && e.diskSize === undefined);
    if (hasGaps) {
      throw corrupt(
        'SNAPSHOT_EXTRA_LAYOUT',
        `Snapshot ${i}: extra data fields must be present in order`,
        off,
        { index: i },
      );
    }
    const id = textEncoder.encode(e.id);
    const name = textEncoder.encode(e.name);
    if (id.length > 0xffff || name.length > 0xffff) {
      throw corrupt('SNAPSHOT_NAME_TOO_LONG', `Snapshot ${i}: id or name longer than 65535 bytes`, off, {
        index: i,
      });
    }
    setU64(b, off, e.l1TableOffset);
    setU32(b, off + 8, e.l1Size);
    setU16(b, off + 12, id.length);
    setU16(b, off + 14, name.length);
    setU32(b, off + 16, e.dateSec);
    setU32(b, off + 20, e.dateNsec);
    setU64n(b, off + 24, BigInt.asUintN(64, e.vmClockNsec));
    setU32(b, off + 32, e.vmStateSize);
    setU32(b, off + 36, extra);
    off += C.SNAPSHOT_ENTRY_FIXED_SIZE;
    if (e.vmStateSizeLarge !== undefined) setU64(b, off, e.vmStateSizeLarge);
    if (e.diskSize !== undefined) setU64(b, off + 8, e.diskSize);
    if (e.icount !== undefined) setU64n(b, off + 16, BigInt.asUintN(64, e.icount));
    const known = extra - e.unknownExtraData.length;
    b.set(e.unknownExtraData, off + known);
    off += extra;
    b.set(id, off);
    off += id.length;
    b.set(name, off);
    off += name.length;
  });
  return b;
}
