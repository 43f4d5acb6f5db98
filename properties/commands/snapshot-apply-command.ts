/** `snapshot -a NAME`: an existing snapshot, chosen by the seed. The disk (and, v3, its size) reverts. */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export class SnapshotApplyCommand extends StepCommand {
  constructor(private readonly choice: number) {
    super();
  }
  protected resolve(model: DiskModel): Step[] | undefined {
    const names = [...model.snapshots.keys()];
    if (names.length === 0 || !model.snapshotApplyCertain()) return undefined;
    return [{ kind: 'snapshot-apply', name: names[this.choice % names.length] }];
  }
  protected describeSeed(): string {
    return `snapshot apply #${this.choice}`;
  }
}
