/**
 * Motif: compressed clusters (`write -c`), read back, then partly overwritten, zeroed or
 * discarded, read again, and sometimes more compressed clusters after (packed into the host
 * clusters the first ones share): a compressed descriptor that covers the wrong number of
 * sectors, a freed host cluster still holding a live compressed cluster, or a partial overwrite
 * that decompresses the wrong bytes shows in the reads or in `qemu-img check`.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { CompressedWriteCommand } from './compressed-write-command.ts';
import { MotifScratch } from './motif-scratch.ts';

export type CompressedFollow = 'write' | 'zero' | 'discard' | 'none';

export interface CompressedOverwriteSeed {
  start: number;
  clusters: number;
  follow: CompressedFollow;
  at: number;
  length: number;
  again: boolean;
}

export class CompressedOverwriteCommand extends StepCommand {
  constructor(private readonly seed: CompressedOverwriteSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const s = new MotifScratch(model);
    // small clusters compress to a few dozen bytes: more of them, so that the packed data crosses
    // sector and host-cluster boundaries (where descriptors and refcounts go wrong)
    const count = this.seed.clusters * (s.clusterSize < 4096 ? 8 : 1);
    const first = new CompressedWriteCommand(this.seed.start, count).stepsFor(s.model);
    if (!first || first.length !== 1) return undefined;
    const w = first[0];
    if (w.kind !== 'write-compressed' || !s.add(w)) return undefined;
    s.read(w.offset, w.length);
    const off = w.offset + (this.seed.at % w.length);
    const len = 1 + (this.seed.length % Math.max(1, w.length - (off - w.offset)));
    switch (this.seed.follow) {
      case 'write':
        s.write(off, len);
        break;
      case 'zero':
        s.zero(off, len, true);
        break;
      case 'discard':
        s.discard(w.offset, Math.min(w.length, s.clusterSize));
        break;
      case 'none':
        break;
    }
    if (this.seed.again) {
      const more = new CompressedWriteCommand(this.seed.start + count, count).stepsFor(s.model);
      if (more?.[0] && more[0].kind === 'write-compressed' && s.add(more[0]))
        s.read(more[0].offset, more[0].length);
    }
    s.read(w.offset, w.length);
    return s.result(2);
  }

  protected describeSeed(): string {
    return `compressed clusters, then ${this.seed.follow}`;
  }
}
