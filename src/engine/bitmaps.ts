/**
 * Persistent dirty bitmaps (qcow2.txt "Bitmaps extension", "autoclear features" bit 0): the
 * engine's one owner of them, kept alive as QEMU 7.2 keeps them (docs/bitmaps.md):
 * - a read-write open loads the directory, tables and bits (validated: QEMU's limits refuse the
 *   open) and marks every bitmap `in_use` on disk before anything else changes;
 * - every guest range a request changed is recorded (`recordChange`) in the enabled bitmaps;
 *   a resize resizes them; snapshot apply is refused while there are bitmaps (QEMU: "Device has
 *   active dirty bitmaps");
 * - close (`storeOnClose`) writes the bitmaps anew, then switches the header's bitmaps extension
 *   to the new directory (autoclear bit 0 kept), then frees the old clusters: the flush order's
 *   relocation pattern. Inconsistent bitmaps (in_use at open: a crash) are kept byte for byte.
 * An extension QEMU ignores (autoclear bit 0 clear, or v2) is left alone: no bitmaps are loaded,
 * nothing is written, as QEMU reads no bitmaps from such an image.
 * The bit sets and their on-disk form live in dirty-bitmaps.ts.
 *
 * Interface for the engine: `list()`, `entries()`, `openWritable()`, `recordChange()`,
 * `resized()`, `refuseSnapshotApply()`, `live()` (the qemu-img bitmap operations), `storeOnClose()`.
 */
import type { BlockDevice } from '../io/device.ts';
import * as C from '../format/constants.ts';
import {
  BME_FLAG_AUTO,
  BME_FLAG_IN_USE,
  decodeBitmapDirectory,
  validateBitmapDirectory,
  validateBitmapsExtension,
  type BitmapDirectoryEntry,
} from '../format/bitmaps.ts';
import { bitmapsExtension, encodeBitmapsExtension, setExtension, type Header } from '../format/header.ts';
import { Qcow2Error } from '../errors.ts';
import type { MetadataWriter } from './metadata.ts';
import { DirtyBitmaps } from './dirty-bitmaps.ts';

/** qemu-img's warning when autoclear bit 0 is clear: the bitmaps extension is then ignored. */
export const INCONSISTENT_BITMAPS_WARNING =
  'a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent';
export const V2_BITMAPS_WARNING =
  'This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent';

/** One persistent bitmap as `qemu-img info` lists it (Qcow2BitmapInfo, members in QAPI order). */
export interface BitmapInfo {
  name: string;
  granularity: number;
  /** 'in-use', then 'auto' (get_bitmap_info_flags). */
  flags: Array<'in-use' | 'auto'>;
}

export interface BitmapListing {
  /** undefined: no bitmaps extension, or one that is ignored (see `warnings`). */
  bitmaps: BitmapInfo[] | undefined;
  /** The lines QEMU prints when it ignores the extension (qcow2_read_extensions). */
  warnings: string[];
}

/** A bitmap's granularity and bits (bit k covers guest bytes [k·g, (k+1)·g), LSB first). */
export interface BitmapSource {
  granularityBits: number;
  bits: Uint8Array;
}

export class Bitmaps {
  private loaded: BitmapDirectoryEntry[] | undefined;
  /** The live bitmaps of a read-write open (undefined: read-only, or not loaded). */
  private liveSet: DirtyBitmaps | undefined;

  constructor(
    private readonly device: BlockDevice,
    private readonly header: Header,
    /** Absent for a read-only listing (no header writes). */
    private readonly meta?: MetadataWriter,
  ) {}

  /** Does the header carry a bitmaps extension that readers must honour (v3, autoclear bit 0 set)? */
  consistent(): boolean {
    const h = this.header;
    return (
      bitmapsExtension(h) !== undefined &&
      h.version === 3 &&
      (h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n
    );
  }

  /** The decoded, validated bitmap directory ([] without a consistent extension). */
  entries(): BitmapDirectoryEntry[] {
    if (this.loaded) return this.loaded;
    const ext = bitmapsExtension(this.header);
    if (!ext || !this.consistent()) return [];
    const cs = 2 ** this.header.clusterBits;
    validateBitmapsExtension(ext, cs);
    const dir = new Uint8Array(ext.bitmapDirectorySize);
    this.device.read(dir, ext.bitmapDirectoryOffset);
    const entries = decodeBitmapDirectory(dir, ext.nbBitmaps, { directoryOffset: ext.bitmapDirectoryOffset });
    validateBitmapDirectory(entries, {
      clusterSize: cs,
      diskSize: this.header.size,
      directoryOffset: ext.bitmapDirectoryOffset,
    });
    this.loaded = entries;
    return entries;
  }

  /**
   * The bitmaps as `qemu-img info` lists them. QEMU (qcow2_read_extensions) ignores the extension
   * when autoclear bit 0 is clear (a program without bitmap support wrote the image, or a v2
   * image) and warns.
   */
  list(): BitmapListing {
    const h = this.header;
    if (!bitmapsExtension(h)) return { bitmaps: undefined, warnings: [] };
    if (!this.consistent()) {
      return {
        bitmaps: undefined,
        warnings: [
          `warning: ${h.version === 2 ? V2_BITMAPS_WARNING : INCONSISTENT_BITMAPS_WARNING}`,
          "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.",
        ],
      };
    }
    const entries = this.liveSet ? this.liveSet.list.map((b) => b.entry) : this.entries();
    return {
      bitmaps: entries.map((e) => ({
        name: e.name,
        granularity: 2 ** e.granularityBits,
        flags: [
          ...(e.flags & BME_FLAG_IN_USE ? (['in-use'] as const) : []),
          ...(e.flags & BME_FLAG_AUTO ? (['auto'] as const) : []),
        ],
      })),
      warnings: [],
    };
  }

  /**
   * A read-write open: load the bitmaps (QEMU's limits refuse the open) and mark every one
   * `in_use` on disk (flushed) before anything else changes, so that a crash leaves them
   * inconsistent. Nothing happens for an extension QEMU would ignore.
   */
  openWritable(): void {
    if (!this.meta) return;
    const ext = bitmapsExtension(this.header);
    if (!ext || !this.consistent()) return;
    const live = DirtyBitmaps.load(this.device, ext, 2 ** this.header.clusterBits, this.header.size);
    live.markInUse(this.device);
    this.device.flush();
    this.liveSet = live;
    this.loaded = undefined;
  }

  /** The live bitmaps, for the qemu-img bitmap operations (created empty on a first --add). */
  live(): DirtyBitmaps {
    if (!this.meta) throw new Qcow2Error('READ_ONLY', 'Bitmaps can only be changed on a read-write open', {});
    if (this.header.version < 3)
      throw new Qcow2Error('BITMAPS_V2', 'Cannot store dirty bitmaps in qcow2 v2 files', {});
    this.liveSet ??= DirtyBitmaps.empty();
    return this.liveSet;
  }

  /** A bitmap's bits for a merge (read without marking anything in use on a read-only open). */
  source(name: string): BitmapSource {
    if (!this.liveSet) {
      const ext = bitmapsExtension(this.header);
      const set =
        ext && this.consistent()
          ? DirtyBitmaps.load(this.device, ext, 2 ** this.header.clusterBits, this.header.size)
          : DirtyBitmaps.empty();
      return set.source(name);
    }
    return this.liveSet.source(name);
  }

  /** A guest request changed [offset, offset + length): the enabled bitmaps record it. */
  recordChange(offset: number, length: number): void {
    this.liveSet?.mark(offset, length, this.header.size);
  }

  /** The disk is now `header.size` bytes. */
  resized(): void {
    this.liveSet?.resize(this.header.size);
  }

  /** QEMU (bdrv_snapshot_goto) refuses to revert a disk that has bitmaps. */
  refuseSnapshotApply(): void {
    if (this.liveSet && this.liveSet.size > 0)
      throw new Qcow2Error('SNAPSHOT_WITH_BITMAPS', 'Device has active dirty bitmaps', {});
  }

  /**
   * Close: the bitmaps anew (data, tables, directory), flushed with their refcounts; then the
   * header switched to the new directory (autoclear bit 0 set while bitmaps exist, the extension
   * and the bit gone with the last one); then the old clusters freed (step 5 of the next flush).
   */
  storeOnClose(): void {
    const meta = this.meta;
    const live = this.liveSet;
    if (!meta || !live || !live.needsStore) return;
    meta.flush();
    const { ext, release, releaseData } = live.store(
      { device: this.device, clusterSize: 2 ** this.header.clusterBits, alloc: (n) => meta.alloc.alloc(n) },
      this.header.size,
    );
    meta.flushTables();
    this.device.flush();
    meta.updateHeaderNow((h) => {
      setExtension(h, C.EXT_BITMAPS, ext ? encodeBitmapsExtension(ext) : undefined);
      if (ext) h.autoclearFeatures |= C.AUTOCLEAR_BITMAPS;
      else h.autoclearFeatures &= ~C.AUTOCLEAR_BITMAPS;
    });
    const cs = 2 ** this.header.clusterBits;
    // qcow2_store_persistent_dirty_bitmaps' frees: bitmap data with QCOW2_DISCARD_ALWAYS (punched),
    // old tables and directory with QCOW2_DISCARD_OTHER
    for (const off of release) meta.rc.decrement(off / cs, 1, releaseData.has(off) ? 'always' : 'other');
    meta.flush();
    this.loaded = undefined;
  }
}
