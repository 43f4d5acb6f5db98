/** `close` (and open again): the image goes through a clean close and a fresh open; in mixed runs the other side opens it. */
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class ReopenCommand extends StepCommand {
  protected resolve(): Step[] {
    return [{ kind: 'reopen' }];
  }
  protected describeSeed(): string {
    return 'close and reopen';
  }
}
