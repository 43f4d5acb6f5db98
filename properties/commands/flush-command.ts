/** `flush`. */
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class FlushCommand extends StepCommand {
  protected resolve(): Step[] {
    return [{ kind: 'flush' }];
  }
  protected describeSeed(): string {
    return 'flush';
  }
}
