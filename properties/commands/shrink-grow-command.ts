/**
 * Motif: data across a cluster, a shrink that cuts through that cluster (at a sector boundary;
 * cluster-aligned where the known bug's steering says so), a grow, and a read of the old tail:
 * the bytes between the cut and the old end must read as zeros (or, with a backing file, as the
 * model says), never as the data the shrink cut off. Sometimes a partial write into the grown
 * tail cluster before the read (its read-modify-write must not bring the old bytes back).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { MAX_DISK_SIZE } from './resize-grow-command.ts';
import { MotifScratch, anchorOf } from './motif-scratch.ts';

export type RegrowKind = 'back' | 'sectors' | 'clusters';

export interface ShrinkGrowSeed {
  anchor: number;
  cut: number;
  regrow: RegrowKind;
  writeTail: boolean;
}

export class ShrinkGrowCommand extends StepCommand {
  constructor(private readonly seed: ShrinkGrowSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    const old = model.size;
    const unit = model.quirks.clusterAlignedShrink ? cs : 512;
    // the cluster the cut goes through: an anchor's, not the first (the disk keeps some data)
    const c = Math.floor(anchorOf(model, this.seed.anchor) / cs);
    const base = c * cs;
    const steps = Math.max(1, Math.floor(cs / unit));
    let size = base + unit * (1 + (this.seed.cut % steps));
    if (size >= old) size = Math.floor((old - 1) / unit) * unit;
    if (size < unit || size >= old) return undefined;
    if (model.resizeRefused(size)) return undefined;
    // data from before the cut to past it (the part past the cut is what must not come back)
    const from = Math.max(0, size - 1 - (this.seed.cut % Math.min(size, 2 * cs)));
    s.write(from, Math.min(old, Math.max(size + 1, Math.floor(size / cs) * cs + cs)) - from);
    if (!s.add({ kind: 'resize', size })) return undefined;
    const grown =
      this.seed.regrow === 'back'
        ? old
        : this.seed.regrow === 'sectors'
          ? size + 512 * (1 + (this.seed.cut % 16))
          : size + cs * (1 + (this.seed.cut % 3));
    if (grown <= size || grown > MAX_DISK_SIZE || s.model.growUncertain(grown)) return s.result(2);
    s.add({ kind: 'resize', size: grown });
    if (this.seed.writeTail) s.write(size + 1 + (this.seed.cut % 64), 1 + (this.seed.anchor % 700));
    s.read(Math.max(0, size - 512), Math.min(grown, Math.floor(size / cs) * cs + 2 * cs) - size + 512);
    return s.result(3);
  }

  protected describeSeed(): string {
    return `shrink through data, grow (${this.seed.regrow})`;
  }
}
