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
    const size = Math.floor((model.size * this.fraction) / unit) * unit;
    if (size < unit || size >= model.size) return undefined;
    return [{ kind: 'resize', size }];
  }

  protected describeSeed(): string {
    return `shrink(${this.fraction.toFixed(3)})`;
  }
}
