/**
 * Motif: small stamped writes into 3–6 different L2 tables' ranges (a stride of one L2 table's
 * coverage: cluster_size / entry size entries of one cluster each), sometimes a discard of the
 * first one, then every range read back. With the tiny caches some layouts open with (two L2
 * tables, four refcount blocks), each write evicts a dirty table, so a table dropped without
 * being written back, or read back from a stale copy, reads wrong.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { MotifScratch } from './motif-scratch.ts';

export interface L2SweepSeed {
  start: number;
  tables: number;
  length: number;
  reverse: boolean;
  discardFirst: boolean;
}

export class L2SweepCommand extends StepCommand {
  constructor(private readonly seed: L2SweepSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    // qcow2.txt: an L2 entry is 8 bytes (16 with extended L2)
    const coverage = (cs / (model.layout.extendedL2 ? 16 : 8)) * cs;
    const k = this.seed.tables;
    const stride = s.size >= coverage * k ? coverage : Math.max(cs, Math.floor(s.size / k / cs) * cs || cs);
    const first = (this.seed.start % Math.max(1, stride)) - ((this.seed.start % Math.max(1, stride)) % 512);
    const len = 1 + (this.seed.length % Math.min(cs, 4096));
    const ranges: { offset: number; length: number }[] = [];
    for (let i = 0; i < k; i++) {
      const off = (first + i * stride + ((i * 512) % cs)) % Math.max(1, s.size - 1);
      const r = s.clip(off, len);
      if (r && s.write(r.offset, r.length)) ranges.push(r);
    }
    if (ranges.length < 2) return undefined;
    if (this.seed.discardFirst) s.discard(Math.floor(ranges[0].offset / cs) * cs, cs);
    for (const r of this.seed.reverse ? [...ranges].reverse() : ranges) s.read(r.offset, r.length);
    return s.result(3);
  }

  protected describeSeed(): string {
    return `writes across ${this.seed.tables} L2 tables`;
  }
}
