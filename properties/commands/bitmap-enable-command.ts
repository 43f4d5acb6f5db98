/** `qemu-img bitmap --enable`: an existing bitmap records writes again. The bitmap is chosen by the seed. */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class BitmapEnableCommand extends StepCommand {
  constructor(private readonly choice: number) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const list = model.bitmaps.list;
    if (list.length === 0) return undefined;
    return [{ kind: 'bitmap', op: 'enable', name: list[this.choice % list.length].name }];
  }

  protected describeSeed(): string {
    return `bitmap --enable #${this.choice}`;
  }
}
