/**
 * Motif: two stamped writes that overlap inside one granule at different unaligned offsets, then a
 * read of the whole clusters they touch (sometimes a partial zero write or discard in between).
 * A read-modify-write that takes the old bytes from the wrong place (an encrypted sector decrypted
 * at the wrong offset, a subcluster or cluster COW copying the wrong range, a compressed cluster
 * rewritten from a stale copy) leaves bytes a stamp recognises as misplaced. The granule is a
 * sector (encryption's unit), a subcluster (extended L2) or a cluster.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { MotifScratch, anchorOf } from './motif-scratch.ts';

export type RmwGranule = 'sector' | 'subcluster' | 'cluster';
export type RmwMiddle = 'none' | 'zero' | 'discard';

export interface OverlapRmwSeed {
  granule: RmwGranule;
  anchor: number;
  len1: number;
  shift: number;
  len2: number;
  middle: RmwMiddle;
}

export class OverlapRmwCommand extends StepCommand {
  constructor(private readonly seed: OverlapRmwSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    const unit =
      this.seed.granule === 'sector'
        ? 512
        : this.seed.granule === 'subcluster'
          ? model.layout.extendedL2
            ? cs / 32
            : Math.min(cs, 4096)
          : cs;
    if (s.size < 2) return undefined;
    // somewhere inside a granule, not at its start
    const at = anchorOf(model, this.seed.anchor);
    const g0 = Math.floor(at / unit) * unit;
    const a = Math.min(s.size - 1, g0 + 1 + (this.seed.anchor % Math.max(1, unit - 1)));
    const l1 = 1 + (this.seed.len1 % (2 * unit));
    // the second write starts before, inside or just after the first (never at the same offset)
    const d = (this.seed.shift % (l1 + unit)) - Math.floor(unit / 2) || 1;
    const b = Math.max(0, a + d);
    const l2 = 1 + (this.seed.len2 % (2 * unit));
    if (!s.write(a, l1)) return undefined;
    const m = mid(a, l1);
    if (this.seed.middle === 'zero') s.zero(m.offset, m.length, false);
    else if (this.seed.middle === 'discard') s.discard(m.offset, m.length);
    s.write(b, l2);
    s.readClusters(Math.min(a, b), Math.max(a + l1, b + l2) - Math.min(a, b));
    return s.result();
  }

  protected describeSeed(): string {
    return `overlapping unaligned writes (${this.seed.granule}, ${this.seed.middle})`;
  }
}

/** The middle third of a range (at least one byte). */
function mid(offset: number, length: number): { offset: number; length: number } {
  const third = Math.floor(length / 3);
  return { offset: offset + third, length: Math.max(1, length - 2 * third) };
}
