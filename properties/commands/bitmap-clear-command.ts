/** `qemu-img bitmap --clear`: an existing bitmap forgets every dirty bit. The bitmap is chosen by the seed. */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class BitmapClearCommand extends StepCommand {
  constructor(private readonly choice: number) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const list = model.bitmaps.list;
    if (list.length === 0) return undefined;
    return [{ kind: 'bitmap', op: 'clear', name: list[this.choice % list.length].name }];
  }

  protected describeSeed(): string {
    return `bitmap --clear #${this.choice}`;
  }
}
