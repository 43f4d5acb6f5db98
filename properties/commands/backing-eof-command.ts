/**
 * Motif: the backing file's end inside the disk (a base shorter than the image, or an image grown
 * past its base), where one cluster — with extended L2, one subcluster — is partly the base's data
 * and partly past its end. Reads through to the base there must stop at its end and give zeros
 * after it (never read the base past its end); a partial write, zero write or discard in that
 * granule must copy the base's part and zeros for the rest (copy-on-write across the end). One to
 * three such operations, optionally after a read of the granule, then a read of the clusters
 * around the end (a base as long as the disk or longer: the disk grown past it first). Over
 * whatever base the layout made (qcow2 or raw, any size class); the general kinds meet the end
 * by chance, `backing-partial` with one partial range, this motif by design.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { MotifScratch } from './motif-scratch.ts';
import { MAX_DISK_SIZE } from './resize-grow-command.ts';

export type EofOp =
  'read' | 'write-before' | 'write-after' | 'write-across' | 'zero-across' | 'discard-across';

export interface BackingEofSeed {
  ops: EofOp[];
  at: number;
  length: number;
  unmap: boolean;
  readFirst: boolean;
  /** With extended L2: aim at the subcluster holding the end (else at its cluster). */
  subcluster: boolean;
}

export class BackingEofCommand extends StepCommand {
  constructor(private readonly seed: BackingEofSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const eof = model.base?.disk.size ?? 0;
    if (eof <= 0) return undefined;
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    if (eof >= model.size) {
      // a base as long as the disk or longer: grow the disk past the base's end first (an image
      // grown past its base; the grown part past the old end reads as zeros either way)
      const size = Math.max(model.size, eof) + 512 * (1 + (this.seed.length % 3)) + cs * (this.seed.at % 2);
      if (size > MAX_DISK_SIZE || model.growUncertain(size) || !s.add({ kind: 'resize', size }))
        return undefined;
    }
    // extended L2: 32 subclusters per cluster (qcow2.txt "Extended L2 Entries")
    const granule = model.layout.extendedL2 && this.seed.subcluster ? cs / 32 : cs;
    // the granule holding the base's last byte: [g0, gEnd), the base's part [g0, eof)
    const g0 = Math.floor((eof - 1) / granule) * granule;
    const gEnd = Math.min(s.size, g0 + granule);
    const before = eof - g0;
    // past the end: the rest of the granule, or (the end on a granule boundary) the next granule
    const afterEnd = gEnd > eof ? gEnd : Math.min(s.size, eof + granule);
    const after = afterEnd - eof;
    if (this.seed.readFirst) s.readClusters(g0, gEnd - g0);
    this.seed.ops.forEach((op, i) => {
      // each operation its own spot: the seeds mixed with the operation's index
      const at = this.seed.at + i * 7919;
      const len = this.seed.length + i * 104729;
      const acrossStart = g0 + (at % before);
      const acrossLength = eof - acrossStart + 1 + (len % after);
      switch (op) {
        case 'read':
          s.read(acrossStart, acrossLength);
          break;
        case 'write-before': {
          // inside the base's part, short of the granule's start or of the base's end
          const off = g0 + (at % before);
          const max = eof - off - (off === g0 && before > 1 ? 1 : 0);
          s.write(off, 1 + (len % Math.max(1, max)));
          break;
        }
        case 'write-after': {
          const off = eof + (at % after);
          s.write(off, 1 + (len % Math.max(1, afterEnd - off)));
          break;
        }
        case 'write-across':
          s.write(acrossStart, acrossLength);
          break;
        case 'zero-across':
          s.zero(acrossStart, acrossLength, this.seed.unmap);
          break;
        case 'discard-across':
          s.discard(acrossStart, acrossLength);
          break;
      }
    });
    // the clusters around the end, whole
    s.readClusters(g0, Math.max(afterEnd, Math.min(s.size, g0 + 2 * cs)) - g0);
    return s.result(2);
  }

  protected describeSeed(): string {
    return `around the backing file's end (${this.seed.ops.join(', ')})`;
  }
}
