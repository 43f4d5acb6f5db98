/**
 * Reading a dm-log-writes log (the format of src/io/recording-device.ts and of QEMU's
 * `blklogwrites` driver): the super block, then entries in order, each a write (with its sectors),
 * a FLUSH, a DISCARD or a MARK. Entries are read past the super block's `nr_entries` up to the end
 * of the log when asked (`scanPastCount`): blklogwrites updates the count only at flushes, so a
 * log of a run that has not flushed yet holds more entries than its super block says.
 */
import {
  LOG_DISCARD_FLAG,
  LOG_ENTRY_BYTES,
  LOG_FLAG_MASK,
  LOG_FLUSH_FLAG,
  LOG_FUA_FLAG,
  LOG_MARK_FLAG,
  LOG_SUPER_BYTES,
  WRITE_LOG_MAGIC,
  WRITE_LOG_VERSION,
} from '../../src/io/recording-device.ts';

export type LogEntry =
  | { kind: 'write'; index: number; offset: number; data: Uint8Array; fua: boolean }
  | { kind: 'flush'; index: number }
  | { kind: 'discard'; index: number; offset: number; length: number }
  | { kind: 'mark'; index: number; label: string };

export interface WriteLog {
  sectorSize: number;
  /** The super block's entry count. */
  superEntries: number;
  entries: LogEntry[];
}

export class LogFormatError extends Error {
  readonly code = 'BAD_WRITE_LOG';
}

export function parseWriteLog(log: Uint8Array, opts: { scanPastCount?: boolean } = {}): WriteLog {
  if (log.length < LOG_SUPER_BYTES) throw new LogFormatError(`write log too short (${log.length} bytes)`);
  const v = new DataView(log.buffer, log.byteOffset, log.byteLength);
  if (v.getBigUint64(0, true) !== WRITE_LOG_MAGIC) throw new LogFormatError('bad write log magic');
  const version = v.getBigUint64(8, true);
  if (version !== WRITE_LOG_VERSION) throw new LogFormatError(`write log version ${version}`);
  const superEntries = Number(v.getBigUint64(16, true));
  const sectorSize = v.getUint32(24, true);
  if (sectorSize < 512 || (sectorSize & (sectorSize - 1)) !== 0 || sectorSize >= 1 << 24)
    throw new LogFormatError(`bad write log sector size ${sectorSize}`);
  const entries: LogEntry[] = [];
  let at = sectorSize;
  for (let index = 0; ; index++) {
    if (index >= superEntries && !opts.scanPastCount) break;
    if (at + LOG_ENTRY_BYTES > log.length) {
      if (index < superEntries)
        throw new LogFormatError(`write log ends at entry ${index} of ${superEntries}`);
      break;
    }
    const sector = Number(v.getBigUint64(at, true));
    const nr = Number(v.getBigUint64(at + 8, true));
    const flags = v.getBigUint64(at + 16, true);
    const dataLen = Number(v.getBigUint64(at + 24, true));
    if ((flags & ~LOG_FLAG_MASK) !== 0n) {
      if (index < superEntries)
        throw new LogFormatError(`bad flags 0x${flags.toString(16)} in entry ${index} at ${at}`);
      break; // past the count: stale bytes, not an entry
    }
    at += sectorSize;
    if ((flags & LOG_DISCARD_FLAG) !== 0n) {
      entries.push({ kind: 'discard', index, offset: sector * sectorSize, length: nr * sectorSize });
      continue;
    }
    const bytes = nr * sectorSize;
    if (at + bytes > log.length) {
      if (index < superEntries) throw new LogFormatError(`entry ${index}: data past the end of the log`);
      break;
    }
    const data = log.subarray(at, at + bytes);
    at += bytes;
    if ((flags & LOG_MARK_FLAG) !== 0n) {
      entries.push({ kind: 'mark', index, label: new TextDecoder().decode(data.subarray(0, dataLen)) });
    } else if ((flags & LOG_FLUSH_FLAG) !== 0n && nr === 0) {
      entries.push({ kind: 'flush', index });
    } else {
      // (a FLUSH with data is dm-log-writes' REQ_PREFLUSH write: the flush comes first)
      if ((flags & LOG_FLUSH_FLAG) !== 0n) entries.push({ kind: 'flush', index });
      entries.push({
        kind: 'write',
        index,
        offset: sector * sectorSize,
        data,
        fua: (flags & LOG_FUA_FLAG) !== 0n,
      });
    }
  }
  return { sectorSize, superEntries, entries };
}
