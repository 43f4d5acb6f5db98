/**
 * The backing files of a run, as the model knows them: the image's current backing file (its
 * name, format and exact bytes) and the other files steps made for a later rebase. What each step
 * means for the guest and for the files:
 *
 * - `rebase -b NEW` (safe): the guest reads exactly what it read before; the image now holds a
 *   copy of every range where the old chain and NEW differ (qemu-img compares and writes those),
 *   and reads the rest through NEW. `rebase -b ''` flattens: the image holds everything.
 * - `rebase -u -b NEW`: only the name in the header changes. The model allows it onto a file with
 *   the same content as the current backing file (a `base-copy`, the usual "moved or converted the
 *   base" case), where the guest again reads what it read before, whatever the image holds.
 * - `commit`: every range the image holds is written into the backing file (which grows to the
 *   image's size when shorter: QEMU truncates it up first), and the image is emptied. Ranges the
 *   image does not hold read through from that same file already, so afterwards the file holds
 *   the guest's view over [0, image size) and its old bytes beyond; the guest reads the same.
 *
 * Snapshots of the image read their unallocated clusters through the current backing file, so a
 * step that changes the backing file's content under them (commit, a safe rebase onto other
 * data) is only generated while the image has no snapshots. Bitmaps record the writes a safe
 * rebase makes (QEMU per differing sector run, the engine per cluster), which the model does not
 * follow: no safe rebase with bitmaps. A commit leaves the image's bitmaps unchanged.
 */
import type { BackingFormat, BackingLayout } from '../layout.ts';
import { BACKING_NAME } from '../layout.ts';
import { ReferenceDisk } from './reference-disk.ts';

export interface BaseFile {
  name: string;
  format: BackingFormat;
  disk: ReferenceDisk;
}

/** The bytes of a backing layout (its writes in order over zeros). */
export function baseDisk(layout: Pick<BackingLayout, 'size' | 'writes'>): ReferenceDisk {
  const disk = new ReferenceDisk(layout.size);
  for (const w of layout.writes) {
    const end = Math.min(w.offset + w.length, layout.size);
    if (end > w.offset) disk.fill(w.offset, end - w.offset, w.pattern);
  }
  return disk;
}

/** The layout's backing file as the run starts (undefined: none). */
export function initialBase(backing: BackingLayout | undefined): BaseFile | undefined {
  return backing ? { name: BACKING_NAME, format: backing.format, disk: baseDisk(backing) } : undefined;
}

const PIECE = 1 << 20;

/**
 * Which clusters of a guest `view` differ from what `base` shows through (zeros past its end):
 * the clusters a safe rebase onto `base` copies into the image. Compared a piece at a time.
 */
export function differingClusters(
  view: ReferenceDisk,
  base: ReferenceDisk | undefined,
  clusterSize: number,
): number[] {
  const out: number[] = [];
  const step = Math.max(PIECE, clusterSize);
  for (let at = 0; at < view.size; at += step) {
    const len = Math.min(step, view.size - at);
    const mine = view.isZeroRange(at, len) ? undefined : view.read(at, len);
    const theirs = readThrough(base, at, len);
    if (mine === undefined && theirs === undefined) continue;
    for (let c = at; c < at + len; c += clusterSize) {
      const from = c - at;
      const to = Math.min(len, from + clusterSize);
      const a = mine?.subarray(from, to);
      const b = theirs?.subarray(from, to);
      const same = a && b ? Buffer.compare(a, b) === 0 : (a ?? b)!.every((v) => v === 0);
      if (!same) out.push(Math.floor(c / clusterSize));
    }
  }
  return out;
}

/** A range of a backing file as the guest sees it through (zeros past its end); undefined: all zeros. */
export function readThrough(
  base: ReferenceDisk | undefined,
  offset: number,
  length: number,
): Uint8Array | undefined {
  if (!base || offset >= base.size) return undefined;
  const inside = Math.min(length, base.size - offset);
  if (base.isZeroRange(offset, inside)) return undefined;
  const out = new Uint8Array(length);
  out.set(base.read(offset, inside));
  return out;
}

/** `commit`: the backing file grows to `view`'s size when shorter and holds `view` over [0, its size). */
export function commitInto(base: ReferenceDisk, view: ReferenceDisk): void {
  if (base.size < view.size) base.resize(view.size);
  for (let at = 0; at < view.size; at += PIECE) {
    const len = Math.min(PIECE, view.size - at);
    if (view.isZeroRange(at, len)) base.fill(at, len, 0);
    else base.write(at, view.read(at, len));
  }
}

/** Whether two files read the same (sizes included). */
export function sameContent(a: ReferenceDisk, b: ReferenceDisk): boolean {
  if (a.size !== b.size) return false;
  for (let at = 0; at < a.size; at += PIECE) {
    const len = Math.min(PIECE, a.size - at);
    const za = a.isZeroRange(at, len);
    const zb = b.isZeroRange(at, len);
    if (za && zb) continue;
    if (za !== zb || Buffer.compare(a.read(at, len), b.read(at, len)) !== 0) return false;
  }
  return true;
}
