/** `snapshot -d NAME`: an existing snapshot, chosen by the seed. */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class SnapshotDeleteCommand extends StepCommand {
  constructor(private readonly choice: number) {
    super();
  }
  protected resolve(model: DiskModel): Step[] | undefined {
    const names = [...model.snapshots.keys()];
    if (names.length === 0) return undefined;
    return [{ kind: 'snapshot-delete', name: names[this.choice % names.length] }];
  }
  protected describeSeed(): string {
    return `snapshot delete #${this.choice}`;
  }
}
