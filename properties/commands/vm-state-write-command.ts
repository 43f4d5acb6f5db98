/**
 * `write -b -P p OFF LEN`: VM state (what savevm stores past the guest disk), sector-aligned, with a
 * pattern unique to the write (so misplaced or stale sectors show), within the first 4 MiB of the
 * area. Not with a backing file (unwritten VM state would read from it where it is long enough).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

/** Sectors of the VM-state area the commands address. */
export const VM_STATE_SECTORS = 8192;

export function vmStateUsable(model: DiskModel): boolean {
  return !model.layout.backing;
}

export class VmStateWriteCommand extends StepCommand {
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
    // one byte value per write number (1..255): a sector from another write reads as another byte
    const pattern = (model.lastWriteId % 255) + 1;
    return [{ kind: 'vmstate-write', offset: first * 512, length: n * 512, pattern }];
  }

  protected describeSeed(): string {
    return `vm-state write(${this.start}, ${this.sectors})`;
  }
}
