/** `read offset length`: the image's exact bytes over a range against the model's. */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class ReadCommand extends StepCommand {
  constructor(private readonly range: RangeSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const { offset, length } = resolveRange(this.range, model.clusterSize, model.size, model.recent);
    return [{ kind: 'read', offset, length }];
  }

  protected describeSeed(): string {
    return `read(${this.range.placement}, ${this.range.extent})`;
  }
}
