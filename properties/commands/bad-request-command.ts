/**
 * Requests a user gets wrong, which every implementation must refuse without touching the image
 * (the next steps and the end-of-sequence oracles see it unchanged): I/O that runs past the end
 * of the disk (a read, write, zero write, discard or compressed write), and a snapshot apply or
 * delete naming no snapshot. The model marks these steps as refusals (`! ` in the case script;
 * runner/execute-step.ts `expectedRefusal`), and for the engine also the error code it must
 * give (`expectedErrorCode`, src/errors.ts).
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export type BadRequestKind =
  | 'read-past-end'
  | 'write-past-end'
  | 'zero-past-end'
  | 'discard-past-end'
  | 'compressed-past-end'
  | 'apply-missing-snapshot'
  | 'delete-missing-snapshot';

/** A snapshot name the generated names (s1, s2, …) never take. */
export const MISSING_SNAPSHOT = 'no-such-snapshot';

export class BadRequestCommand extends StepCommand {
  constructor(
    private readonly kind: BadRequestKind,
    private readonly seed: number,
  ) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const size = model.size;
    // from inside the disk (or at its very end) to 1 byte – 2 clusters past it
    const before = this.seed % 3 === 0 ? 0 : 1 + (this.seed % Math.min(size, 4096));
    const offset = size - before;
    const length = before + 1 + ((this.seed >> 2) % (2 * model.clusterSize));
    switch (this.kind) {
      case 'read-past-end':
        return [{ kind: 'read', offset, length }];
      case 'write-past-end':
        return [{ kind: 'write', offset, length, stamp: model.nextWriteId() }];
      case 'zero-past-end':
        return [{ kind: 'write-zeroes', offset, length, unmap: this.seed % 2 === 0 }];
      case 'discard-past-end':
        return [{ kind: 'discard', offset, length }];
      case 'compressed-past-end': {
        if (model.layout.encrypt) return undefined; // not generated for encrypted images
        const c = model.clusterSize;
        const start = Math.floor((size - 1) / c) * c; // the last cluster, whole, and one more
        return [{ kind: 'write-compressed', offset: start, length: 2 * c, stamp: model.nextWriteId() }];
      }
      case 'apply-missing-snapshot':
        return [{ kind: 'snapshot-apply', name: MISSING_SNAPSHOT }];
      case 'delete-missing-snapshot':
        return [{ kind: 'snapshot-delete', name: MISSING_SNAPSHOT }];
    }
  }

  protected describeSeed(): string {
    return `bad request (${this.kind})`;
  }
}
