/**
 * `commit`: `qemu-img commit` of the image into its backing file (raw or qcow2, shorter, as long
 * or longer), which is emptied and continues the sequence reading through the committed file.
 * The backing file's new content is checked against the model (commands/backing-steps.ts). Not
 * while the image has snapshots (they read through the changed file). The image's bitmaps stay as
 * they are: emptying the image is not a guest write (QEMU 7.2 and the engine alike, checked by
 * the bitmap oracle after `write; bitmap --clear b0; commit; write`).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { WHOLE_DISK_STEP_MAX } from './rebase-command.ts';

export class CommitCommand extends StepCommand {
  protected resolve(model: DiskModel): Step[] | undefined {
    // (the committed backing file is checked whole: disks up to WHOLE_DISK_STEP_MAX)
    if (!model.base || model.layout.encrypt || model.snapshots.size > 0 || model.size > WHOLE_DISK_STEP_MAX)
      return undefined;
    return [{ kind: 'commit' }];
  }

  protected describeSeed(): string {
    return 'commit';
  }
}
