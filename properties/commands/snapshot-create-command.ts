/** `snapshot -c NAME` (fresh names s1, s2, …; refused by QEMU when refcount_bits=1 and the image was written). */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

/** Keeps the per-sequence oracles cheap. */
export const MAX_SNAPSHOTS = 8;

export class SnapshotCreateCommand extends StepCommand {
  protected resolve(model: DiskModel): Step[] | undefined {
    if (model.snapshots.size >= MAX_SNAPSHOTS) return undefined;
    if (!model.snapshotCreateCertain()) return undefined;
    if (model.quirks.skipRefusedSnapshotCreate && model.snapshotCreateRefused()) return undefined;
    return [{ kind: 'snapshot-create', name: model.nextSnapshotName() }];
  }
  protected describeSeed(): string {
    return 'snapshot create';
  }
}
