/**
 * `truncate SIZE` shrinking the disk to a fraction of its size (sector multiples). Cluster-aligned
 * while the known bug qemu-7.2-stale-tail-after-shrink-grow steers (properties/known-bugs/).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class ResizeShrinkCommand extends StepCommand {
  constructor(private readonly fraction: number) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const unit = model.quirks.clusterAlignedShrink ? model.clusterSize : 512;
    // half the time the cut goes through the latest write (its cluster keeps data beyond the end)
    const recent = model.recent[0];
    const target =
      this.fraction < 0.5 && recent && recent.offset + recent.length <= model.size
        ? recent.offset + recent.length * (this.fraction * 2)
        : model.size * this.fraction;
    const size = Math.floor(target / unit) * unit;
    if (size < unit || size >= model.size) return undefined;
    return [{ kind: 'resize', size }];
  }

  protected describeSeed(): string {
    return `shrink(${this.fraction.toFixed(3)})`;
  }
}
