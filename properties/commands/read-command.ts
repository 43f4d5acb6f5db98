/**
 * Read and compare: the model's bytes for a range, as `read -P pattern offset length` steps (one
 * per run of identical bytes, at most 64 runs: the range is cut after them).
 */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

const MAX_RUNS = 64;

export class ReadCommand extends StepCommand {
  constructor(private readonly range: RangeSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] {
    const { offset, length } = resolveRange(this.range, model.clusterSize, model.size);
    return model
      .runs(offset, length)
      .slice(0, MAX_RUNS)
      .map((run) => ({ kind: 'read', offset: run.offset, length: run.length, pattern: run.pattern }));
  }

  protected describeSeed(): string {
    return `read(${this.range.placement}, ${this.range.extent})`;
  }
}
