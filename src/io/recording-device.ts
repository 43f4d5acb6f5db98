/**
 * A recording block device: every write and flush reaching the device below is also appended to a
 * log in the dm-log-writes format (Linux drivers/md/dm-log-writes.c; QEMU's `blklogwrites` driver
 * writes the same), so one replay tool rebuilds any state a crash could leave, whoever wrote it.
 *
 * The log, all fields little-endian:
 *   sector 0      super block: magic u64, version u64 (1), nr_entries u64, sector size u32
 *   then entries  one sector each: sector u64, nr_sectors u64, flags u64, data_len u64 (0),
 *                 followed by nr_sectors sectors of data (none for DISCARD, FLUSH and an empty MARK)
 * A write is logged with the sector-aligned range around it as the device holds it after the
 * write (QEMU's blklogwrites gets the same from its request alignment). A flush is an entry with
 * the FLUSH flag and no sectors; like QEMU, the super block's entry count is updated at each flush
 * (and at close), so a log read while recording may hold entries past `nr_entries`.
 * A truncate is logged as a DISCARD of the sectors between the old and the new end (the format
 * has no truncate; a replay makes discarded sectors zeros, growing the file to their end).
 *
 * The device does not classify writes (that needs the image's metadata): see the harness's
 * properties/crash/regions.ts.
 */
import type { BlockDevice } from './device.ts';

export const LOG_FLUSH_FLAG = 1n << 0n;
export const LOG_FUA_FLAG = 1n << 1n;
export const LOG_DISCARD_FLAG = 1n << 2n;
export const LOG_MARK_FLAG = 1n << 3n;
export const LOG_FLAG_MASK = LOG_FLUSH_FLAG | LOG_FUA_FLAG | LOG_DISCARD_FLAG | LOG_MARK_FLAG;
/** "rhswfsj\0" read as a little-endian u64. */
export const WRITE_LOG_MAGIC = 0x6a736677736872n;
export const WRITE_LOG_VERSION = 1n;
/** Bytes of the super block's fields and of an entry header (each padded to a sector). */
export const LOG_SUPER_BYTES = 28;
export const LOG_ENTRY_BYTES = 32;

export function encodeLogSuper(nrEntries: number, sectorSize: number): Uint8Array {
  const out = new Uint8Array(sectorSize);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, WRITE_LOG_MAGIC, true);
  v.setBigUint64(8, WRITE_LOG_VERSION, true);
  v.setBigUint64(16, BigInt(nrEntries), true);
  v.setUint32(24, sectorSize, true);
  return out;
}

export function encodeLogEntryHeader(
  sector: number,
  nrSectors: number,
  flags: bigint,
  sectorSize: number,
  dataLen = 0,
): Uint8Array {
  const out = new Uint8Array(sectorSize);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(sector), true);
  v.setBigUint64(8, BigInt(nrSectors), true);
  v.setBigUint64(16, flags, true);
  v.setBigUint64(24, BigInt(dataLen), true);
  return out;
}

export interface RecordingOptions {
  /** The log's sector size (default 512, QEMU's default `log-sector-size`). */
  sectorSize?: number;
  /** Continue an existing log (its super block's entries are kept), as blklogwrites' `log-append`. */
  append?: boolean;
}

export class RecordingDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly log: BlockDevice;
  readonly sectorSize: number;
  private entries = 0;
  /** Next free log sector. */
  private logSector = 1;

  constructor(inner: BlockDevice, log: BlockDevice, opts: RecordingOptions = {}) {
    this.inner = inner;
    this.log = log;
    this.sectorSize = opts.sectorSize ?? 512;
    if (opts.append && log.size() > 0) this.resumeLog();
    else this.log.write(encodeLogSuper(0, this.sectorSize), 0);
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get name(): string {
    return this.inner.name;
  }
  /** Entries logged so far (including those of an appended log). */
  get entryCount(): number {
    return this.entries;
  }

  private resumeLog(): void {
    const head = new Uint8Array(LOG_SUPER_BYTES);
    this.log.read(head, 0);
    const v = new DataView(head.buffer);
    if (v.getBigUint64(0, true) !== WRITE_LOG_MAGIC) throw new Error(`${this.log.name}: not a write log`);
    const sectorSize = v.getUint32(24, true);
    if (sectorSize !== this.sectorSize)
      throw new Error(`${this.log.name}: log sector size ${sectorSize}, not ${this.sectorSize}`);
    const n = Number(v.getBigUint64(16, true));
    const entry = new Uint8Array(LOG_ENTRY_BYTES);
    const ev = new DataView(entry.buffer);
    for (let i = 0; i < n; i++) {
      this.log.read(entry, this.logSector * this.sectorSize);
      const nr = Number(ev.getBigUint64(8, true));
      const flags = ev.getBigUint64(16, true);
      this.logSector += 1 + ((flags & LOG_DISCARD_FLAG) !== 0n ? 0 : nr);
    }
    this.entries = n;
  }

  private append(header: Uint8Array, data?: Uint8Array): void {
    this.log.write(header, this.logSector * this.sectorSize);
    this.logSector += 1;
    if (data && data.length > 0) {
      this.log.write(data, this.logSector * this.sectorSize);
      this.logSector += data.length / this.sectorSize;
    }
    this.entries += 1;
  }

  private writeSuper(): void {
    this.log.write(encodeLogSuper(this.entries, this.sectorSize), 0);
  }

  read(buf: Uint8Array, offset: number): void {
    this.inner.read(buf, offset);
  }

  write(buf: Uint8Array, offset: number): void {
    this.inner.write(buf, offset);
    if (buf.length === 0) return;
    const s = this.sectorSize;
    const first = Math.floor(offset / s);
    const end = Math.ceil((offset + buf.length) / s);
    let data: Uint8Array;
    if (first * s === offset && end * s === offset + buf.length) data = buf;
    else {
      // The sectors around an unaligned write, as the device holds them now.
      data = new Uint8Array((end - first) * s);
      this.inner.read(data, first * s);
    }
    this.append(encodeLogEntryHeader(first, end - first, 0n, s), data);
  }

  size(): number {
    return this.inner.size();
  }

  truncate(length: number): void {
    const before = this.inner.size();
    this.inner.truncate(length);
    // A shrink discards the sectors cut off; a growth is logged as a discard of the new sectors
    // too (they read as zeros), so a replay gives the file its length.
    const s = this.sectorSize;
    const from = Math.ceil(Math.min(before, length) / s);
    const to = Math.ceil(Math.max(before, length) / s);
    if (to > from) this.append(encodeLogEntryHeader(from, to - from, LOG_DISCARD_FLAG, s));
  }

  flush(): void {
    this.inner.flush();
    this.append(encodeLogEntryHeader(0, 0, LOG_FLUSH_FLAG, this.sectorSize));
    this.writeSuper();
    this.log.flush();
  }

  /** A MARK entry carrying a short label (dm-log-writes' user marks). */
  mark(label: string): void {
    const text = new TextEncoder().encode(label);
    const s = this.sectorSize;
    const sectors = Math.ceil(text.length / s);
    const data = new Uint8Array(sectors * s);
    data.set(text);
    this.append(encodeLogEntryHeader(0, sectors, LOG_MARK_FLAG, s, text.length), data);
  }

  close(): void {
    this.writeSuper();
    this.inner.close();
    this.log.close();
  }
}
