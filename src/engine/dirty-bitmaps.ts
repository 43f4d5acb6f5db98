/**
 * Persistent dirty bitmaps kept alive as QEMU 7.2 keeps them (qcow2.txt "Bitmaps";
 * docs/bitmaps.md has the measured rules):
 * - load: the directory and every bitmap's table and data clusters are read and validated at open
 *   (QEMU's limits: src/format/bitmaps.ts). A bitmap found `in_use` was not stored by a clean
 *   close: it is *inconsistent* and kept byte for byte, never read, changed or rewritten.
 * - a read-write open sets `in_use` on every bitmap, on disk, before anything else changes
 *   (`markInUse`, directory rewritten in place).
 * - every guest range a request changes sets the bits covering it (rounded out to the granularity)
 *   in every enabled, consistent bitmap (`mark`); disabled ones are left alone. A resize keeps
 *   ceil(size / granularity) bits.
 * - close (`store`): every consistent bitmap is written anew — a data cluster for each
 *   cluster-sized piece of bitmap data that is not all zeros (QEMU never writes the all-ones
 *   entry), a table, then a new directory with `in_use` cleared — and the caller switches the
 *   header's bitmaps extension to it before the old directory, tables and data clusters are freed.
 *
 * What it does not do: allocate or free clusters itself (the ports do), write the header, or
 * decide when to flush (the image facade owns the flush order).
 */
import type { BlockDevice } from '../io/device.ts';
import { CorruptionError, Qcow2Error, type ErrorCode } from '../errors.ts';
import {
  BME_FLAG_AUTO,
  BME_FLAG_IN_USE,
  BME_MAX_GRANULARITY_BITS,
  BME_MAX_NAME_SIZE,
  BME_MIN_GRANULARITY_BITS,
  BITMAP_TABLE_ENTRY_SIZE,
  QCOW2_MAX_BITMAPS,
  bitmapDirectorySize,
  bitmapTableEntriesNeeded,
  decodeBitmapDirectory,
  decodeBitmapTable,
  encodeBitmapDirectory,
  encodeBitmapTable,
  newBitmapEntry,
  validateBitmapDirectory,
  validateBitmapsExtension,
  type BitmapDirectoryEntry,
  type BitmapTableEntry,
} from '../format/bitmaps.ts';
import type { BitmapsExtension } from '../format/header.ts';

/** What the bitmaps need from the layers below. */
export interface BitmapPorts {
  device: BlockDevice;
  clusterSize: number;
  /** `n` contiguous new clusters (refcount 1); returns the host offset. */
  alloc(n: number): number;
}

export interface DirtyBitmap {
  readonly name: string;
  readonly granularityBits: number;
  /** Flag `auto`: the bitmap records writes. */
  enabled: boolean;
  /** `in_use` when the image was opened: left by a crash (or a program still running). */
  readonly inconsistent: boolean;
  /** The entry as last read or written (inconsistent bitmaps are written back exactly so). */
  entry: BitmapDirectoryEntry;
  /** Bit k covers guest bytes [k·g, (k+1)·g), LSB first in each byte; undefined when inconsistent. */
  bits: Uint8Array | undefined;
  /** Host clusters the bitmap's table and data occupy on disk now (freed when it is rewritten). */
  clusters: number[];
}

/** A `qemu-img bitmap` failure, in QEMU's words. */
function bitmapError(code: ErrorCode, message: string, name: string): Qcow2Error {
  return new Qcow2Error(code, message, { name });
}

function bitCount(diskSize: number, granularityBits: number): number {
  return Math.ceil(diskSize / 2 ** granularityBits);
}

/** Set bits [first, end) of an LSB-first bit array. */
function setBits(bits: Uint8Array, first: number, end: number): void {
  let i = first;
  for (; i < end && i % 8 !== 0; i++) bits[i >> 3] |= 1 << (i & 7);
  for (; i + 8 <= end; i += 8) bits[i >> 3] = 0xff;
  for (; i < end; i++) bits[i >> 3] |= 1 << (i & 7);
}

/** Clear every bit from `first` on (bytes beyond the array are not touched). */
function clearBitsFrom(bits: Uint8Array, first: number): void {
  if (first >= bits.length * 8) return;
  let i = first;
  for (; i % 8 !== 0; i++) bits[i >> 3] &= ~(1 << (i & 7));
  bits.fill(0, i >> 3);
}

function testBit(bits: Uint8Array, k: number): boolean {
  return (bits[k >> 3] & (1 << (k & 7))) !== 0;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export class DirtyBitmaps {
  readonly list: DirtyBitmap[];
  private directory: { offset: number; bytes: number } | undefined;
  /** Clusters of removed bitmaps: freed by the next store, once no directory points at them. */
  private orphaned: number[] = [];
  /** Of the freed clusters, those that held bitmap data (not a table): freed as QCOW2_DISCARD_ALWAYS. */
  private orphanedData: number[] = [];
  /** Anything to write back at close (a read-write open always rewrites, as QEMU does). */
  private dirty = false;

  private constructor(list: DirtyBitmap[], directory: { offset: number; bytes: number } | undefined) {
    this.list = list;
    this.directory = directory;
  }

  static empty(): DirtyBitmaps {
    return new DirtyBitmaps([], undefined);
  }

  /**
   * Read and validate the directory and the bitmaps (`ext` from the header; undefined: none).
   * Throws CorruptionError in QEMU's words ("Bitmap 'NAME' doesn't satisfy the constraints").
   */
  static load(
    dev: BlockDevice,
    ext: BitmapsExtension | undefined,
    clusterSize: number,
    diskSize: number,
  ): DirtyBitmaps {
    if (!ext) return DirtyBitmaps.empty();
    validateBitmapsExtension(ext, clusterSize);
    const dir = new Uint8Array(ext.bitmapDirectorySize);
    dev.read(dir, ext.bitmapDirectoryOffset);
    const entries = decodeBitmapDirectory(dir, ext.nbBitmaps, { directoryOffset: ext.bitmapDirectoryOffset });
    validateBitmapDirectory(entries, { clusterSize, diskSize, directoryOffset: ext.bitmapDirectoryOffset });
    const list = entries.map((entry): DirtyBitmap => {
      const inconsistent = (entry.flags & BME_FLAG_IN_USE) !== 0;
      const tableBytes = entry.bitmapTableSize * BITMAP_TABLE_ENTRY_SIZE;
      const raw = new Uint8Array(tableBytes);
      dev.read(raw, entry.bitmapTableOffset);
      const table = decodeBitmapTable(raw, entry.bitmapTableSize, {
        clusterSize,
        tableOffset: entry.bitmapTableOffset,
      });
      const clusters: number[] = [];
      for (let c = 0; c < Math.ceil(tableBytes / clusterSize); c++)
        clusters.push(entry.bitmapTableOffset + c * clusterSize);
      for (const t of table) if (t.kind === 'data') clusters.push(t.offset);
      let bits: Uint8Array | undefined;
      if (
        !inconsistent &&
        entry.bitmapTableSize !== bitmapTableEntriesNeeded(diskSize, entry.granularityBits, clusterSize)
      ) {
        // QEMU's load_bitmap_data: the table must be exactly as large as the disk needs (EINVAL)
        throw new CorruptionError(
          'BITMAP_BAD_TABLE',
          `Could not read bitmap '${entry.name}' from image: Invalid argument`,
          entry.bitmapTableOffset,
          { name: entry.name, bitmapTableSize: entry.bitmapTableSize },
        );
      }
      if (!inconsistent) {
        const count = bitCount(diskSize, entry.granularityBits);
        bits = new Uint8Array(Math.ceil(count / 8));
        table.forEach((t, i) => {
          const start = i * clusterSize;
          if (start >= bits!.length) return;
          const piece = bits!.subarray(start, Math.min(bits!.length, start + clusterSize));
          if (t.kind === 'data') dev.read(piece, t.offset);
          else if (t.allOnes) piece.fill(0xff); // qcow2.txt: bit 0 without an offset, all ones
        });
        clearBitsFrom(bits, count);
      }
      return {
        name: entry.name,
        granularityBits: entry.granularityBits,
        enabled: (entry.flags & BME_FLAG_AUTO) !== 0,
        inconsistent,
        entry,
        bits,
        clusters,
      };
    });
    return new DirtyBitmaps(list, { offset: ext.bitmapDirectoryOffset, bytes: ext.bitmapDirectorySize });
  }

  get size(): number {
    return this.list.length;
  }

  /** Something must be written back at close. */
  get needsStore(): boolean {
    return this.dirty;
  }

  get(name: string): DirtyBitmap | undefined {
    return this.list.find((b) => b.name === name);
  }

  /**
   * Read-write open: every bitmap is marked `in_use` on disk, the directory rewritten in place
   * (same size), so that a crash leaves them inconsistent. Flushing is the caller's.
   */
  markInUse(dev: BlockDevice): void {
    if (this.list.length === 0 || !this.directory) return;
    for (const b of this.list) b.entry = { ...b.entry, flags: b.entry.flags | BME_FLAG_IN_USE };
    dev.write(encodeBitmapDirectory(this.list.map((b) => b.entry)), this.directory.offset);
    this.dirty = true;
  }

  /** A guest request changed [offset, offset + length): enabled, consistent bitmaps record it. */
  mark(offset: number, length: number, diskSize: number): void {
    if (length <= 0) return;
    for (const b of this.list) {
      if (!b.enabled || !b.bits) continue;
      const g = 2 ** b.granularityBits;
      const end = Math.min(bitCount(diskSize, b.granularityBits), Math.ceil((offset + length) / g));
      setBits(b.bits, Math.floor(offset / g), end);
      this.dirty = true;
    }
  }

  /** The disk is now `newSize` bytes: each bitmap keeps ceil(newSize / g) bits, new ones clean. */
  resize(newSize: number): void {
    for (const b of this.list) {
      if (!b.bits) continue;
      const count = bitCount(newSize, b.granularityBits);
      const bits = new Uint8Array(Math.ceil(count / 8));
      bits.set(b.bits.subarray(0, bits.length));
      clearBitsFrom(bits, count);
      b.bits = bits;
    }
    if (this.list.length > 0) this.dirty = true;
  }

  /** The dirty guest ranges of a consistent bitmap, clipped at `diskSize`. */
  dirtyRanges(name: string, diskSize: number): { offset: number; length: number }[] {
    const b = this.require(name);
    const bits = this.usable(b);
    const g = 2 ** b.granularityBits;
    const count = bitCount(diskSize, b.granularityBits);
    const out: { offset: number; length: number }[] = [];
    for (let k = 0; k < count; k++) {
      if (!testBit(bits, k)) continue;
      let e = k + 1;
      while (e < count && testBit(bits, e)) e++;
      out.push({ offset: k * g, length: Math.min(e * g, diskSize) - k * g });
      k = e;
    }
    return out;
  }

  // ------------------------------------------------ qemu-img bitmap operations (block-dirty-bitmap-*)

  add(name: string, granularity: number, opts: { disabled?: boolean; diskSize: number }): void {
    const bits = Math.log2(granularity);
    if (!Number.isInteger(bits) || bits < BME_MIN_GRANULARITY_BITS || bits > BME_MAX_GRANULARITY_BITS)
      throw bitmapError('BITMAP_BAD_GRANULARITY', 'Granularity must be power of 2 and at least 512', name);
    if (this.get(name)) throw bitmapError('BITMAP_EXISTS', `Bitmap already exists: ${name}`, name);
    if (new TextEncoder().encode(name).length > BME_MAX_NAME_SIZE)
      throw bitmapError(
        'BITMAP_NAME_TOO_LONG',
        `Can't make bitmap '${name}' persistent: Name length exceeds maximum (${BME_MAX_NAME_SIZE} characters)`,
        name,
      );
    if (this.list.length >= QCOW2_MAX_BITMAPS)
      throw bitmapError('TOO_MANY_BITMAPS', `Can't make bitmap '${name}' persistent: too many bitmaps`, name);
    const entry = newBitmapEntry({
      name,
      granularityBits: bits,
      bitmapTableOffset: 0,
      bitmapTableSize: 0,
      flags: opts.disabled ? 0 : BME_FLAG_AUTO,
    });
    this.list.push({
      name,
      granularityBits: bits,
      enabled: !opts.disabled,
      inconsistent: false,
      entry,
      bits: new Uint8Array(Math.ceil(bitCount(opts.diskSize, bits) / 8)),
      clusters: [],
    });
    this.dirty = true;
  }

  /** Remove a bitmap (an inconsistent one too); its clusters are freed at the next store. */
  remove(name: string): void {
    const i = this.list.findIndex((b) => b.name === name);
    if (i < 0) throw bitmapError('BITMAP_NOT_FOUND', `Dirty bitmap '${name}' not found`, name);
    this.orphaned.push(...this.list[i].clusters);
    this.orphanedData.push(...dataClustersOf(this.list[i]));
    this.list.splice(i, 1);
    this.dirty = true;
  }

  clear(name: string): void {
    this.usable(this.require(name)).fill(0);
    this.dirty = true;
  }

  setEnabled(name: string, enabled: boolean): void {
    const b = this.require(name);
    this.usable(b);
    b.enabled = enabled;
    this.dirty = true;
  }

  /** DST |= the guest ranges dirty in `source` (bits of another image's bitmap too), rounded out. */
  merge(source: { granularityBits: number; bits: Uint8Array }, target: string, diskSize: number): void {
    const dst = this.require(target);
    const dbits = this.usable(dst);
    const gs = 2 ** source.granularityBits;
    const gd = 2 ** dst.granularityBits;
    const count = Math.min(source.bits.length * 8, bitCount(diskSize, source.granularityBits));
    const dcount = bitCount(diskSize, dst.granularityBits);
    for (let k = 0; k < count; k++) {
      if (!testBit(source.bits, k)) continue;
      let e = k + 1;
      while (e < count && testBit(source.bits, e)) e++;
      setBits(dbits, Math.floor((k * gs) / gd), Math.min(dcount, Math.ceil(Math.min(e * gs, diskSize) / gd)));
      k = e;
    }
    this.dirty = true;
  }

  /** A consistent bitmap's bits, for a merge source. */
  source(name: string): { granularityBits: number; bits: Uint8Array } {
    const b = this.require(name);
    return { granularityBits: b.granularityBits, bits: this.usable(b) };
  }

  private require(name: string): DirtyBitmap {
    const b = this.get(name);
    if (!b) throw bitmapError('BITMAP_NOT_FOUND', `Dirty bitmap '${name}' not found`, name);
    return b;
  }

  private usable(b: DirtyBitmap): Uint8Array {
    if (!b.bits)
      throw bitmapError(
        'BITMAP_INCONSISTENT',
        `Bitmap '${b.name}' is inconsistent and cannot be used`,
        b.name,
      );
    return b.bits;
  }

  // ------------------------------------------------ close

  /**
   * Write every consistent bitmap anew (data clusters, table) and a new directory; returns the
   * header extension to switch to (undefined: no bitmaps left) and the clusters to free once the
   * header points at the new directory. Inconsistent bitmaps keep their entry and clusters.
   */
  store(
    ports: BitmapPorts,
    diskSize: number,
  ): { ext: BitmapsExtension | undefined; release: number[]; releaseData: Set<number> } {
    const cs = ports.clusterSize;
    const release: number[] = this.orphaned;
    const releaseData = new Set(this.orphanedData);
    this.orphaned = [];
    this.orphanedData = [];
    for (const b of this.list) {
      if (!b.bits) continue;
      release.push(...b.clusters);
      for (const c of dataClustersOf(b)) releaseData.add(c);
      const tableSize = bitmapTableEntriesNeeded(diskSize, b.granularityBits, cs);
      const table: BitmapTableEntry[] = [];
      const clusters: number[] = [];
      for (let i = 0; i < tableSize; i++) {
        const piece = b.bits.subarray(i * cs, Math.min(b.bits.length, (i + 1) * cs));
        if (isZero(piece)) {
          table.push({ kind: 'unallocated', allOnes: false });
          continue;
        }
        const at = ports.alloc(1);
        const buf = new Uint8Array(cs);
        buf.set(piece);
        ports.device.write(buf, at);
        table.push({ kind: 'data', offset: at });
        clusters.push(at);
      }
      const tableClusters = Math.ceil((tableSize * BITMAP_TABLE_ENTRY_SIZE) / cs);
      const tableAt = ports.alloc(tableClusters);
      // The table's own bytes only, as QEMU writes it (store_bitmap): the file may end inside it.
      ports.device.write(encodeBitmapTable(table), tableAt);
      for (let c = 0; c < tableClusters; c++) clusters.unshift(tableAt + c * cs);
      b.entry = {
        ...b.entry,
        bitmapTableOffset: tableAt,
        bitmapTableSize: tableSize,
        flags: (b.enabled ? BME_FLAG_AUTO : 0) | (b.entry.flags & ~(BME_FLAG_AUTO | BME_FLAG_IN_USE)),
      };
      b.clusters = clusters;
    }
    if (this.directory) {
      for (let c = 0; c < Math.ceil(this.directory.bytes / cs); c++)
        release.push(this.directory.offset + c * cs);
    }
    this.dirty = false;
    if (this.list.length === 0) {
      this.directory = undefined;
      return { ext: undefined, release, releaseData };
    }
    const entries = this.list.map((b) => b.entry);
    const bytes = bitmapDirectorySize(entries);
    const dirClusters = Math.ceil(bytes / cs);
    const dirAt = ports.alloc(dirClusters);
    // (QEMU writes the directory's own bytes too: update_ext_header_and_dir)
    ports.device.write(encodeBitmapDirectory(entries), dirAt);
    this.directory = { offset: dirAt, bytes };
    return {
      ext: { nbBitmaps: entries.length, bitmapDirectorySize: bytes, bitmapDirectoryOffset: dirAt },
      release,
      releaseData,
    };
  }
}

/** A bitmap's data clusters: its clusters but its table's (clear_bitmap_table frees those with ALWAYS). */
function dataClustersOf(b: {
  clusters: number[];
  entry: { bitmapTableOffset: number; bitmapTableSize: number };
}): number[] {
  const start = b.entry.bitmapTableOffset;
  const end = start + b.entry.bitmapTableSize * BITMAP_TABLE_ENTRY_SIZE;
  return b.clusters.filter((c) => c < start || c >= end);
}
