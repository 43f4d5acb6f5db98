/**
 * `qemu-img bitmap --add -g G [--disable]`: a new persistent bitmap (v3 images only; at most
 * MAX_BITMAPS at a time to keep the oracle's NBD reads few), named b0, b1, … in order.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export const MAX_BITMAPS = 4;

export class BitmapAddCommand extends StepCommand {
  constructor(
    private readonly granularityBits: number,
    private readonly disabled: boolean,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    if (model.layout.compat !== '1.1' || model.bitmaps.size >= MAX_BITMAPS) return undefined;
    return [
      {
        kind: 'bitmap',
        op: 'add',
        name: model.bitmaps.nextName(),
        granularity: 2 ** this.granularityBits,
        disabled: this.disabled,
      },
    ];
  }

  protected describeSeed(): string {
    return `bitmap --add -g ${2 ** this.granularityBits}${this.disabled ? ' --disable' : ''}`;
  }
}
