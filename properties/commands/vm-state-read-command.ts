/** `read -b OFF LEN`: the VM-state area's exact bytes against the model's (model/vm-state.ts). */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { VM_STATE_SECTORS, vmStateUsable } from './vm-state-write-command.ts';

export class VmStateReadCommand extends StepCommand {
  constructor(
    private readonly start: number,
    private readonly sectors: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    if (!vmStateUsable(model)) return undefined;
    const first = this.start % VM_STATE_SECTORS;
    const n = Math.min(this.sectors, VM_STATE_SECTORS - first);
    return [{ kind: 'vmstate-read', offset: first * 512, length: n * 512 }];
  }

  protected describeSeed(): string {
    return `vm-state read(${this.start}, ${this.sectors})`;
  }
}
