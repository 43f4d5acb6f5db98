/**
 * Persistent dirty bitmaps (qcow2.txt "Bitmaps extension", "autoclear features" bit 0): the
 * engine's one owner of them. It loads and validates the bitmap directory (on first use: a
 * read-write open of an image with bad bitmaps must still be able to repair it), lists the
 * bitmaps, and applies the autoclear rule: this engine does not update bitmaps, so before the
 * first guest write it clears autoclear bit 0, telling every reader that the bitmaps extension
 * no longer describes the data.
 *
 * Interface for the engine: `list()` (with the warnings QEMU prints when the extension is
 * ignored), `entries()` (the decoded directory), `beforeGuestWrite()`.
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
import { bitmapsExtension, type Header } from '../format/header.ts';
import type { MetadataWriter } from './metadata.ts';

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

export class Bitmaps {
  private loaded: BitmapDirectoryEntry[] | undefined;

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
    return {
      bitmaps: this.entries().map((e) => ({
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
   * The autoclear rule: we change guest data without updating persistent bitmaps, so autoclear
   * bit 0 goes (written and flushed before the data changes) and the extension is no longer
   * consistent for any reader.
   */
  beforeGuestWrite(): void {
    if (!this.meta || (this.header.autoclearFeatures & C.AUTOCLEAR_BITMAPS) === 0n) return;
    this.meta.updateHeaderNow((h) => {
      h.autoclearFeatures &= ~C.AUTOCLEAR_BITMAPS;
    });
    this.loaded = undefined;
  }
}
