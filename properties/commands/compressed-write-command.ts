/**
 * `write -c -P pattern offset length`: whole clusters from a cluster boundary (the disk's partial
 * last cluster counts whole), only into clusters without a host cluster (QEMU 7.2 refuses to
 * compress over allocated clusters: the model's conservative allocation hint decides).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

const SEARCH_LIMIT = 4096;

export class CompressedWriteCommand extends StepCommand {
  constructor(
    private readonly startSeed: number,
    private readonly clusters: number,
    /** undefined: stamped data (`write -c -s wN.bin`). */
    private readonly pattern?: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    if (model.layout.encrypt) return undefined; // refused on encrypted images
    const c = model.clusterSize;
    const total = Math.ceil(model.size / c);
    // from the seed's cluster on, the first cluster that is free
    for (let i = 0; i < Math.min(total, SEARCH_LIMIT); i++) {
      const first = (this.startSeed + i) % total;
      if (!model.compressedWriteLegal(first * c, 1)) continue;
      let count = 1;
      while (
        count < this.clusters &&
        first + count < total &&
        model.compressedWriteLegal((first + count) * c, 1)
      )
        count++;
      const offset = first * c;
      const length = Math.min(count * c, model.size - offset);
      return [
        this.pattern === undefined
          ? { kind: 'write-compressed', offset, length, stamp: model.nextWriteId() }
          : { kind: 'write-compressed', offset, length, pattern: this.pattern },
      ];
    }
    return undefined;
  }

  protected describeSeed(): string {
    return `write-compressed(${this.clusters} clusters, ${this.pattern === undefined ? 'stamped' : `0x${this.pattern.toString(16)}`})`;
  }
}
