/**
 * "qemu takes a turn": the implementation closes the image, one qemu-io process performs a few
 * writes / zero writes / discards / reads (each read checked by qemu-io's own `read -P`), then the
 * implementation opens the image again.
 */
import type { DiskModel } from '../model/disk-model.ts';
import { resolveRange, type RangeSeed } from '../arbitraries/range-seed.ts';
import type { DataStep, Step } from '../steps.ts';
import { isUniform } from '../model/compare-bytes.ts';
import { StepCommand } from './step-command.ts';

export type TurnOpKind = 'write' | 'write-zeroes' | 'discard' | 'read';

export interface TurnOpSeed {
  kind: TurnOpKind;
  range: RangeSeed;
  pattern: number;
}

export class QemuTurnCommand extends StepCommand {
  constructor(private readonly ops: readonly TurnOpSeed[]) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const scratch = model.clone();
    const ops: DataStep[] = [];
    for (const seed of this.ops) {
      const { offset, length } = resolveRange(seed.range, scratch.clusterSize, scratch.size, scratch.recent);
      switch (seed.kind) {
        case 'write': {
          // odd seeds write stamped data (`write -s wN.bin`), even ones a pattern
          const op: DataStep =
            seed.pattern % 2 === 1
              ? { kind: 'write', offset, length, stamp: scratch.nextWriteId() }
              : { kind: 'write', offset, length, pattern: seed.pattern };
          ops.push(op);
          scratch.write(op);
          break;
        }
        case 'write-zeroes':
          ops.push({ kind: 'write-zeroes', offset, length, unmap: seed.pattern % 2 === 0 });
          scratch.writeZeroes(offset, length, seed.pattern % 2 === 0);
          break;
        case 'discard':
          ops.push({ kind: 'discard', offset, length });
          scratch.discard(offset, length);
          break;
        case 'read': {
          // qemu-io checks a turn's reads itself (`read -P`): only where the model holds one byte value
          const bytes = scratch.read(offset, length);
          if (isUniform(bytes, bytes[0])) ops.push({ kind: 'read', offset, length, pattern: bytes[0] });
          break;
        }
      }
    }
    return ops.length > 0 ? [{ kind: 'qemu-turn', ops }] : undefined;
  }

  protected describeSeed(): string {
    return `qemu turn (${this.ops.map((o) => o.kind).join(', ')})`;
  }
}
