/**
 * `check -r leaks|all` mid-sequence, as a user runs `qemu-img check -r` on a closed image: the
 * repair must find nothing to repair (anything it reports was a defect already) and the data must
 * stay as the model has it; the implementation then reopens the repaired image.
 */
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class CheckRepairCommand extends StepCommand {
  constructor(private readonly mode: 'leaks' | 'all') {
    super();
  }
  protected resolve(): Step[] {
    return [{ kind: 'check-repair', mode: this.mode }];
  }
  protected describeSeed(): string {
    return `check -r ${this.mode}`;
  }
}
