/**
 * What the model says of bad requests (properties/commands/bad-request-command.ts): which steps
 * are refused, and the engine's error code for each. Kept apart from the command so that the step
 * executor can import it without a cycle.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';

/** Whether the model refuses a step as a bad request (past the end of the disk, a missing snapshot). */
export function badRequest(model: DiskModel, step: Step): boolean {
  switch (step.kind) {
    case 'read':
    case 'write':
    case 'write-zeroes':
    case 'discard':
    case 'write-compressed':
      return step.offset + step.length > model.size;
    case 'snapshot-apply':
    case 'snapshot-delete':
      return !model.snapshots.has(step.name);
    default:
      return false;
  }
}

/** The engine's error code for a step the model refuses (src/errors.ts), when the model knows it. */
export function expectedErrorCode(model: DiskModel, step: Step): string | undefined {
  // an apply is refused for the image's bitmaps before its name is looked up (QEMU's order too)
  if (step.kind === 'snapshot-apply' && model.bitmaps.size > 0) return 'SNAPSHOT_WITH_BITMAPS';
  // The other refusals the model expects (execute-step.ts expectedRefusal) carry their codes too,
  // not only bad requests: a refusal for the wrong reason is a divergence.
  if (!badRequest(model, step)) {
    if (step.kind === 'snapshot-create' && model.snapshotCreateRefused()) return 'REFCOUNT_OVERFLOW';
    if (step.kind === 'resize' && model.resizeRefused(step.size)) return 'RESIZE_WITH_SNAPSHOTS';
    return undefined;
  }
  return step.kind === 'snapshot-apply' || step.kind === 'snapshot-delete'
    ? 'SNAPSHOT_NOT_FOUND'
    : 'OUT_OF_RANGE';
}
