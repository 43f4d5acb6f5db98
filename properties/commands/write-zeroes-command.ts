/** `write -z [-u] offset length`: write zeroes, optionally allowing the clusters to be unmapped. */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class WriteZeroesCommand extends StepCommand {
  constructor(
    private readonly range: RangeSeed,
    private readonly unmap: boolean,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const { offset, length } = resolveRange(this.range, model.clusterSize, model.size, model.recent);
    return [{ kind: 'write-zeroes', offset, length, unmap: this.unmap }];
  }

  protected describeSeed(): string {
    return `write-zeroes(${this.range.placement}, ${this.range.extent}${this.unmap ? ', unmap' : ''})`;
  }
}
