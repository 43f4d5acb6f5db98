/**
 * `qemu-img bitmap --merge SRC IMG DST`: DST gains every range dirty in SRC, rounded out to DST's
 * granularity. Two distinct existing bitmaps, chosen by the seeds.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class BitmapMergeCommand extends StepCommand {
  constructor(
    private readonly source: number,
    private readonly target: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const list = model.bitmaps.list;
    if (list.length < 2) return undefined;
    const s = this.source % list.length;
    const t = (s + 1 + (this.target % (list.length - 1))) % list.length;
    return [{ kind: 'bitmap', op: 'merge', source: list[s].name, name: list[t].name }];
  }

  protected describeSeed(): string {
    return `bitmap --merge #${this.source} → #${this.target}`;
  }
}
