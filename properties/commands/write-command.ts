/**
 * `write -s wN.bin offset length` (stamped: every sector says who wrote it and for where) or
 * `write -P pattern offset length`: any offset and length (unaligned, cluster-crossing, large).
 */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class WriteCommand extends StepCommand {
  /** `pattern` undefined: a stamped write (numbered by the model). */
  constructor(
    private readonly range: RangeSeed,
    private readonly pattern?: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const { offset, length } = resolveRange(this.range, model.clusterSize, model.size, model.recent);
    if (this.pattern === undefined) return [{ kind: 'write', offset, length, stamp: model.nextWriteId() }];
    return [{ kind: 'write', offset, length, pattern: this.pattern }];
  }

  protected describeSeed(): string {
    const data = this.pattern === undefined ? 'stamped' : `0x${this.pattern.toString(16)}`;
    return `write(${this.range.placement}, ${this.range.extent}, ${data})`;
  }
}
