/** `truncate SIZE` growing the disk: by a few sectors, some clusters, or a lot (L1 growth); the new bytes read as zeros. */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export type GrowthKind = 'sectors' | 'clusters' | 'double';

/** Keeps the whole-disk oracles affordable. */
export const MAX_DISK_SIZE = 1 << 30;

export class ResizeGrowCommand extends StepCommand {
  constructor(
    private readonly growth: GrowthKind,
    private readonly amount: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const delta =
      this.growth === 'sectors'
        ? 512 * (1 + (this.amount % 16))
        : this.growth === 'clusters'
          ? model.clusterSize * (1 + (this.amount % 8))
          : Math.ceil(model.size / 512) * 512;
    const size = model.size + delta;
    if (size > MAX_DISK_SIZE) return undefined;
    if (model.growUncertain(size)) return undefined;
    return [{ kind: 'resize', size }];
  }

  protected describeSeed(): string {
    return `grow(${this.growth}, ${this.amount})`;
  }
}
