/**
 * Motif: a few large stamped writes (up to 6 MiB in all: thousands of clusters with small
 * clusters), half of them discarded, one written again where the freed clusters get reused, and
 * the edges of each read back. With small clusters and wide refcounts (a refcount block of 512 B
 * at 64 bits covers 64 clusters) this fills refcount blocks and grows the refcount table, where
 * an off-by-one at a block boundary or a lost refcount update shows in `qemu-img check`.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { MotifScratch } from './motif-scratch.ts';

const MAX_TOTAL = 6 << 20;

export interface BulkAllocSeed {
  start: number;
  clusters: number;
  pieces: number;
  discardHalf: boolean;
}

export class BulkAllocCommand extends StepCommand {
  constructor(private readonly seed: BulkAllocSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    const total = Math.min(MAX_TOTAL, s.size, cs * (64 + (this.seed.clusters % 8192)));
    const pieces = Math.max(1, Math.min(this.seed.pieces, Math.floor(total / 512)));
    const piece = Math.max(512, Math.floor(total / pieces / 512) * 512);
    const gap = Math.floor((s.size - total) / pieces / cs) * cs;
    const start = gap > 0 ? Math.floor((this.seed.start % gap) / 512) * 512 : 0;
    const ranges: { offset: number; length: number }[] = [];
    for (let i = 0; i < pieces; i++) {
      const r = s.clip(start + i * (piece + gap), piece);
      if (r && s.write(r.offset, r.length)) ranges.push(r);
    }
    if (ranges.length === 0) return undefined;
    if (this.seed.discardHalf) {
      for (const r of ranges.filter((_, i) => i % 2 === 0)) s.discard(r.offset, r.length);
      const last = ranges[ranges.length - 1];
      s.write(last.offset + Math.floor(last.length / 2), Math.min(last.length, 64 * cs));
    }
    for (const r of ranges) {
      s.read(r.offset, Math.min(r.length, 4096));
      s.read(Math.max(r.offset, r.offset + r.length - 4096), Math.min(r.length, 4096));
    }
    return s.result(2);
  }

  protected describeSeed(): string {
    return `bulk allocation (${this.seed.pieces} pieces)`;
  }
}
