/**
 * `truncate SIZE` shrinking the disk to a fraction of its size (sector multiples). With QEMU in
 * the loop the new size is cluster-aligned: QEMU 7.2 re-exposes the old bytes of a cut cluster
 * when the disk grows again (a recorded QEMU defect, corpus/qemu-stale-tail-after-shrink-grow.json).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class ResizeShrinkCommand extends StepCommand {
  constructor(private readonly fraction: number) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const unit = model.quirks.staleTailAfterUnalignedShrink ? model.clusterSize : 512;
    const size = Math.floor((model.size * this.fraction) / unit) * unit;
    if (size < unit || size >= model.size) return undefined;
    return [{ kind: 'resize', size }];
  }

  protected describeSeed(): string {
    return `shrink(${this.fraction.toFixed(3)})`;
  }
}
