/** `write -P pattern offset length`: any offset and length (unaligned, cluster-crossing, large). */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class WriteCommand extends StepCommand {
  constructor(
    private readonly range: RangeSeed,
    private readonly pattern: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const { offset, length } = resolveRange(this.range, model.clusterSize, model.size);
    return [{ kind: 'write', offset, length, pattern: this.pattern }];
  }

  protected describeSeed(): string {
    return `write(${this.range.placement}, ${this.range.extent}, 0x${this.pattern.toString(16)})`;
  }
}
