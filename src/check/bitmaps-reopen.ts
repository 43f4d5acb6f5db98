/**
 * What a repairing `qemu-img check -r` does to persistent bitmaps besides checking: it opens the
 * image read-write, so QEMU 7.2 loads the bitmaps and marks them in use (qcow2_load_dirty_bitmaps,
 * the directory rewritten in place), and at close stores them anew
 * (qcow2_store_persistent_dirty_bitmaps): each consistent bitmap's dirty clusters and table go to
 * newly allocated clusters, then a new directory, the header switched to it, and only then the
 * old directory, tables and data clusters are freed. The same read-write open also drops unknown
 * autoclear bits and an ignored bitmaps extension (qcow2_update_header).
 *
 * One deliberate deviation: in check mode QEMU has not read the snapshot table when it rewrites
 * the header at open, so it writes nb_snapshots = 0 and loses every internal snapshot
 * (properties/known-bugs/qemu-7.2-check-repair-frees-bitmap-clusters.json). We keep them.
 */
import { setU16, setU32, setU64 } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import {
  BITMAP_DIR_ENTRY_FIXED_SIZE,
  decodeBitmapDirectoryEntry,
  decodeBitmapTableEntry,
  type BitmapDirectoryEntry,
} from '../format/bitmaps.ts';
import type { Header } from '../format/header.ts';
import type { BlockDevice } from '../io/device.ts';
import { CorruptionError, Qcow2Error } from '../errors.ts';
import type { Checker } from './walk.ts';
import { CheckAbort } from './walk-basics.ts';

const BME_FLAG_IN_USE = 1;
const BME_FLAG_AUTO = 2;
const AUTOCLEAR_MASK = C.AUTOCLEAR_BITMAPS | C.AUTOCLEAR_DATA_FILE_RAW;

/** A bitmap as loaded: its directory entry and its bits (serialized, QEMU's byte order). */
interface Loaded {
  entry: BitmapDirectoryEntry;
  /** Consistent bitmaps are stored at close; ones already in use are left as they are. */
  consistent: boolean;
  bits: Uint8Array;
}

/** The bitmaps a read-write open loaded, for `closeReadWrite`. */
export interface OpenState {
  bitmaps: Loaded[];
}

function loadDirectory(ck: Checker): BitmapDirectoryEntry[] | undefined {
  const b = ck.hstate.bitmaps;
  if (!b || b.nbBitmaps === 0 || b.directorySize > 64 * 1024 * 1024) return undefined;
  const dir = ck.read(b.directoryOffset, b.directorySize);
  const out: BitmapDirectoryEntry[] = [];
  let o = 0;
  for (let i = 0; i < b.nbBitmaps; i++) {
    const d = decodeBitmapDirectoryEntry(dir, o);
    if (!d) return undefined;
    out.push(d.entry);
    o += d.size;
  }
  return out;
}

/** Bytes of a bitmap's serialization (hbitmap: whole 64-bit words of ceil(size / granularity) bits). */
function serializedSize(h: Header, e: BitmapDirectoryEntry): number {
  const nbits = Math.ceil(h.size / 2 ** e.granularityBits);
  return Math.ceil(nbits / 64) * 8;
}

function loadBits(ck: Checker, e: BitmapDirectoryEntry): Uint8Array | undefined {
  const size = serializedSize(ck.h, e);
  if (size > 64 * 1024 * 1024 || e.bitmapTableSize * 8 > 64 * 1024 * 1024) return undefined;
  const bits = new Uint8Array(size);
  const table = ck.read(e.bitmapTableOffset, e.bitmapTableSize * 8);
  for (let i = 0; i < e.bitmapTableSize && i * ck.cs < size; i++) {
    try {
      const t = decodeBitmapTableEntry(table, i * 8, {
        clusterSize: ck.cs,
        hostOffset: e.bitmapTableOffset + i * 8,
      });
      const len = Math.min(ck.cs, size - i * ck.cs);
      if (t.kind === 'data') bits.set(ck.read(t.offset, len), i * ck.cs);
      else if (t.allOnes) bits.fill(0xff, i * ck.cs, i * ck.cs + len);
    } catch (err) {
      if (err instanceof CorruptionError) return undefined;
      throw err;
    }
  }
  // Bits past the disk's end are not part of the bitmap.
  const nbits = Math.ceil(ck.h.size / 2 ** e.granularityBits);
  for (let bit = nbits; bit < size * 8; bit++) bits[bit >> 3]! &= ~(1 << (bit & 7));
  return bits;
}

function encodeEntry(
  e: BitmapDirectoryEntry,
  tableOffset: number,
  tableSize: number,
  flags: number,
): Uint8Array {
  const nul = e.nameBytes.indexOf(0);
  const name = nul < 0 ? e.nameBytes : e.nameBytes.subarray(0, nul);
  const b = new Uint8Array(Math.ceil((BITMAP_DIR_ENTRY_FIXED_SIZE + name.length) / 8) * 8);
  setU64(b, 0, tableOffset);
  setU32(b, 8, tableSize);
  setU32(b, 12, flags);
  b[16] = e.type;
  b[17] = e.granularityBits;
  setU16(b, 18, name.length);
  setU32(b, 20, 0); // QEMU writes no extra data
  b.set(name, BITMAP_DIR_ENTRY_FIXED_SIZE);
  return b;
}

/**
 * The read-write open's changes, before the check: unknown autoclear bits dropped, an ignored
 * bitmaps extension dropped, loaded bitmaps marked in use (directory rewritten in place).
 */
export function openReadWrite(ck: Checker): OpenState {
  const state: OpenState = { bitmaps: [] };
  const hadIgnoredExtension =
    (ck.h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n &&
    ck.h.extensions.some((e) => e.type === C.EXT_BITMAPS);
  let update = hadIgnoredExtension || (ck.hstate.autoclearFeatures & ~AUTOCLEAR_MASK) !== 0n;
  ck.hstate.autoclearFeatures &= AUTOCLEAR_MASK;
  const dir = loadDirectory(ck);
  if (dir) {
    let needsUpdate = false;
    for (const entry of dir) {
      const inUse = (entry.flags & BME_FLAG_IN_USE) !== 0;
      const bits = inUse ? new Uint8Array(0) : loadBits(ck, entry);
      if (!bits) return state; // QEMU refuses such an open; the check reports what it can
      state.bitmaps.push({ entry, consistent: !inUse, bits });
      if (!inUse) needsUpdate = true;
    }
    if (needsUpdate) {
      // update_ext_header_and_dir_in_place: the directory with IN_USE set, same place and size.
      const parts = state.bitmaps.map((l) =>
        encodeEntry(
          l.entry,
          l.entry.bitmapTableOffset,
          l.entry.bitmapTableSize,
          l.entry.flags | BME_FLAG_IN_USE,
        ),
      );
      const size = parts.reduce((n, p) => n + p.length, 0);
      const b = ck.hstate.bitmaps!;
      if (size === b.directorySize && b.directoryOffset !== 0) {
        // The autoclear bit goes first (the directory may then change safely), and comes back after.
        ck.hstate.autoclearFeatures &= ~C.AUTOCLEAR_BITMAPS;
        ck.updateHeader();
        if (!ck.mayWrite(b.directoryOffset, size, ['bitmap directory']))
          throw new Qcow2Error('IMAGE_CORRUPT', "Can't update bitmap directory: Input/output error");
        ck.hstate.autoclearFeatures |= C.AUTOCLEAR_BITMAPS;
        const out = new Uint8Array(size);
        let o = 0;
        for (const p of parts) {
          out.set(p, o);
          o += p.length;
        }
        ck.dev.write(out, b.directoryOffset);
        update = true;
      }
    }
  }
  if (update) ck.updateHeader();
  return state;
}

/** The close: store every consistent bitmap anew, switch the header, free the old clusters. */
export function closeReadWrite(ck: Checker, state: OpenState): void {
  if (ck.dead || !state.bitmaps.some((l) => l.consistent)) return;
  try {
    storeBitmaps(ck, state);
  } catch (e) {
    if (!(e instanceof LostBitmaps)) throw e;
    // qcow2_inactivate reports it and goes on (no mark-clean after a failed store).
    ck.msg(`qemu-img: Lost persistent bitmaps during inactivation of node '${NODE_NAME}': ${e.message}`);
    throw e;
  }
}

/** qemu-img's top node has an automatic name ("#block" and a counter); the side-by-side normalises it. */
const NODE_NAME = '#block0';

class LostBitmaps extends CheckAbort {}

function guarded(ck: Checker, offset: number, size: number, what = 'Qcow2 overlap check failed'): void {
  if (!ck.mayWrite(offset, size, [])) throw new LostBitmaps(`${what}: Input/output error`);
}

/** qcow2_alloc_clusters for a bitmap's data or table: a failure loses the bitmaps. */
function allocFor(ck: Checker, l: Loaded, count: number): number {
  try {
    return ck.allocClusters(count);
  } catch (e) {
    if (!(e instanceof CheckAbort) || e instanceof LostBitmaps) throw e;
    throw new LostBitmaps(`Failed to allocate clusters for bitmap '${l.entry.name}': ${e.errnoText}`);
  }
}

function storeBitmaps(ck: Checker, state: OpenState): void {
  const stored: { table: number; size: number }[] = [];
  for (const l of state.bitmaps) {
    if (!l.consistent) {
      stored.push({ table: l.entry.bitmapTableOffset, size: l.entry.bitmapTableSize });
      continue;
    }
    // store_bitmap_data: a data cluster for each table slot with a set bit, in order.
    const tbSize = Math.ceil(l.bits.length / ck.cs);
    const tb = new Uint8Array(tbSize * 8);
    for (let i = 0; i < tbSize; i++) {
      const part = l.bits.subarray(i * ck.cs, (i + 1) * ck.cs);
      if (!part.some((v) => v !== 0)) continue;
      const off = allocFor(ck, l, 1);
      const buf = new Uint8Array(ck.cs);
      buf.set(part);
      guarded(ck, off, ck.cs);
      ck.dev.write(buf, off);
      setU64(tb, i * 8, off);
    }
    const tbOffset = allocFor(ck, l, Math.max(1, Math.ceil((tbSize * 8) / ck.cs)));
    guarded(ck, tbOffset, tb.length);
    ck.dev.write(tb, tbOffset);
    stored.push({ table: tbOffset, size: tbSize });
  }
  // update_ext_header_and_dir: a new directory (flags: AUTO for enabled bitmaps, IN_USE cleared).
  const parts = state.bitmaps.map((l, i) =>
    encodeEntry(
      l.entry,
      stored[i]!.table,
      stored[i]!.size,
      l.consistent ? l.entry.flags & BME_FLAG_AUTO : l.entry.flags,
    ),
  );
  const dirSize = parts.reduce((n, p) => n + p.length, 0);
  let dirOffset: number;
  try {
    dirOffset = ck.allocClusters(Math.ceil(dirSize / ck.cs));
  } catch (e) {
    // update_ext_header_and_dir's allocation failing: its caller's message.
    if (!(e instanceof CheckAbort) || e instanceof LostBitmaps) throw e;
    throw new LostBitmaps(`Failed to update bitmap extension: ${e.errnoText}`);
  }
  guarded(ck, dirOffset, dirSize, 'Failed to update bitmap extension');
  const dir = new Uint8Array(dirSize);
  let o = 0;
  for (const p of parts) {
    dir.set(p, o);
    o += p.length;
  }
  ck.dev.write(dir, dirOffset);
  // The flush before the header switch is still update_ext_header_and_dir's: its failure too.
  if (!ck.flushRefblocks()) throw new LostBitmaps('Failed to update bitmap extension: Input/output error');
  const old = ck.hstate.bitmaps!;
  ck.hstate.autoclearFeatures |= C.AUTOCLEAR_BITMAPS;
  ck.hstate.bitmaps = { nbBitmaps: state.bitmaps.length, directorySize: dirSize, directoryOffset: dirOffset };
  ck.updateHeader();
  ck.freeClusters(old.directoryOffset, old.directorySize, false); // QCOW2_DISCARD_OTHER: not passed down
  // free_bitmap_clusters: the old data clusters, then the old table.
  for (const l of state.bitmaps) {
    if (!l.consistent) continue;
    const table = ck.read(l.entry.bitmapTableOffset, l.entry.bitmapTableSize * 8);
    for (let i = 0; i < l.entry.bitmapTableSize; i++) {
      try {
        const t = decodeBitmapTableEntry(table, i * 8, { clusterSize: ck.cs });
        if (t.kind === 'data') ck.freeClusters(t.offset, ck.cs, true); // QCOW2_DISCARD_ALWAYS
      } catch (err) {
        if (!(err instanceof CorruptionError)) throw err;
      }
    }
    ck.freeClusters(l.entry.bitmapTableOffset, l.entry.bitmapTableSize * 8, false);
  }
  ck.flushRefblocks();
}

/**
 * qcow2_load_dirty_bitmaps at any open (check mode included): a bitmap whose table has not exactly
 * the entries its size needs cannot be read (load_bitmap_data's -EINVAL), and the open fails.
 */
export function checkBitmapsLoadable(dev: BlockDevice, h: Header): void {
  if ((h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) return;
  const e = h.extensions.find((x) => x.type === C.EXT_BITMAPS);
  if (!e || e.data.length < 24) return;
  const dv = new DataView(e.data.buffer, e.data.byteOffset, e.data.byteLength);
  const nb = dv.getUint32(0);
  const size = Number(dv.getBigUint64(8));
  const offset = Number(dv.getBigUint64(16));
  if (nb === 0 || size > 64 * 1024 * 1024) return;
  const dir = new Uint8Array(size);
  dev.read(dir.subarray(0, Math.max(0, Math.min(size, dev.size() - offset))), offset);
  const cs = 2 ** h.clusterBits;
  let o = 0;
  for (let i = 0; i < nb; i++) {
    const d = decodeBitmapDirectoryEntry(dir, o);
    if (!d) return; // a broken directory is reported elsewhere
    o += d.size;
    const g = d.entry.granularityBits;
    if (g < 9 || g > 31) return;
    const expected = Math.ceil(serializedSize(h, d.entry) / cs);
    if (d.entry.bitmapTableSize !== expected)
      throw new Qcow2Error(
        'BITMAP_BAD_TABLE',
        `Could not read bitmap '${d.entry.name}' from image: Invalid argument`,
        {
          bitmapTableSize: d.entry.bitmapTableSize,
          expected,
        },
      );
  }
}
