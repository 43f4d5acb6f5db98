/** `check`: mid-sequence, close the image and run every image oracle (qemu-img check, convert, snapshots, info), then reopen. */
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class CheckCommand extends StepCommand {
  protected resolve(): Step[] {
    return [{ kind: 'check' }];
  }
  protected describeSeed(): string {
    return 'check';
  }
}
