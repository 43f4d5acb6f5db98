/**
 * Part of a cluster over the backing file's data: a stamped write, a zero write (`-z`, with or
 * without `-u`) or a discard that covers less than a cluster (with extended L2: less than a
 * subcluster, or a few subclusters) where the backing file holds data, or across the backing
 * file's end. The image must keep the rest of the cluster as the backing file has it (copy-on-
 * write from a qcow2 or raw backing file that is shorter, as long or longer). Only with a backing
 * file; the general write/zero/discard kinds meet these ranges by chance, this kind by design.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

export type PartialOp = 'write' | 'write-zeroes' | 'discard';
export type PartialWhere = 'inside-data' | 'data-edge' | 'base-end';

export interface BackingPartialSeed {
  op: PartialOp;
  where: PartialWhere;
  pick: number;
  start: number;
  length: number;
  unmap: boolean;
}

export class BackingPartialCommand extends StepCommand {
  constructor(private readonly seed: BackingPartialSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    const base = model.base;
    if (!base) return undefined;
    const range = partialRange(this.seed, model, base.disk.size);
    if (!range) return undefined;
    const { offset, length } = range;
    switch (this.seed.op) {
      case 'write':
        return [{ kind: 'write', offset, length, stamp: model.nextWriteId() }];
      case 'write-zeroes':
        return [{ kind: 'write-zeroes', offset, length, unmap: this.seed.unmap }];
      case 'discard':
        return [{ kind: 'discard', offset, length }];
    }
  }

  protected describeSeed(): string {
    return `${this.seed.op}(partial cluster over the backing file, ${this.seed.where})`;
  }
}

/** A range shorter than the granule it starts in (cluster, or subcluster with extended L2). */
export function partialRange(
  seed: BackingPartialSeed,
  model: DiskModel,
  baseSize: number,
): { offset: number; length: number } | undefined {
  const cs = model.clusterSize;
  // extended L2: 32 subclusters per cluster; half the time aim inside one subcluster
  const granule = model.layout.extendedL2 && seed.pick % 2 === 0 ? cs / 32 : cs;
  const reach = Math.min(baseSize, model.size);
  if (reach <= 0) return undefined;
  let anchor: number;
  switch (seed.where) {
    case 'inside-data':
    case 'data-edge': {
      const writes = (model.layout.backing?.writes ?? []).filter((w) => w.offset < reach);
      const w = writes.length > 0 ? writes[seed.pick % writes.length] : { offset: 0, length: reach };
      const end = Math.min(reach, w.offset + w.length);
      anchor = seed.where === 'inside-data' ? w.offset + (seed.start % Math.max(1, end - w.offset)) : end - 1;
      break;
    }
    case 'base-end':
      // the granule holding the backing file's last byte (shorter bases end inside the disk)
      anchor = reach - 1;
      break;
  }
  const g0 = anchor - (anchor % granule);
  const gEnd = Math.min(model.size, g0 + granule);
  if (gEnd - g0 < 2) return undefined;
  // start inside the granule (not at its start half the time) and stop short of its end
  const offset = seed.start % 2 === 0 ? g0 + (seed.start % (gEnd - g0 - 1)) : g0;
  const maxLen = gEnd - offset - (offset === g0 ? 1 : 0);
  if (maxLen < 1) return undefined;
  let length = 1 + (seed.length % maxLen);
  // a straddle of the granule's end now and then (two partial granules)
  if (seed.length % 7 === 0)
    length = Math.min(model.size - offset, gEnd - offset + 1 + (seed.length % granule));
  return { offset, length };
}
