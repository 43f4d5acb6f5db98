/** `discard offset length`: whole clusters read as zeros, partial clusters keep their data. */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class DiscardCommand extends StepCommand {
  constructor(private readonly range: RangeSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const { offset, length } = resolveRange(this.range, model.clusterSize, model.size, model.recent);
    return [{ kind: 'discard', offset, length }];
  }

  protected describeSeed(): string {
    return `discard(${this.range.placement}, ${this.range.extent})`;
  }
}
