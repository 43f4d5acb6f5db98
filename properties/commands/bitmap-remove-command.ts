/** `qemu-img bitmap --remove`: an existing bitmap goes, bits and all. The bitmap is chosen by the seed. */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class BitmapRemoveCommand extends StepCommand {
  constructor(private readonly choice: number) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const list = model.bitmaps.list;
    if (list.length === 0) return undefined;
    return [{ kind: 'bitmap', op: 'remove', name: list[this.choice % list.length].name }];
  }

  protected describeSeed(): string {
    return `bitmap --remove #${this.choice}`;
  }
}
