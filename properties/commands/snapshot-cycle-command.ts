/**
 * Motif: data, a snapshot, a partial overwrite (copy-on-write of a shared cluster), then a revert
 * and/or a delete, each followed by another partial overwrite of the same clusters and a read.
 * After a revert the active tree shares every cluster with the snapshot (COPIED must be clear:
 * qcow2.txt, "bit 63 ... must be 0" unless the refcount is 1); after a delete, clusters used by
 * the active tree alone are exclusive again (COPIED set). A write in place into a still-shared
 * cluster changes the snapshot (the end-of-sequence snapshot oracle reads it back with `convert
 * -l`); a wrong COPIED flag is a `qemu-img check` corruption.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';
import { MAX_SNAPSHOTS } from './snapshot-create-command.ts';
import { MotifScratch, anchorOf } from './motif-scratch.ts';

export type SnapshotCycleEnd = 'apply' | 'delete' | 'apply-delete' | 'delete-other';

export interface SnapshotCycleSeed {
  end: SnapshotCycleEnd;
  anchor: number;
  length: number;
  offsets: number[];
}

export class SnapshotCycleCommand extends StepCommand {
  constructor(private readonly seed: SnapshotCycleSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    if (model.snapshots.size >= MAX_SNAPSHOTS || !model.snapshotCreateCertain()) return undefined;
    if (model.snapshotCreateRefused()) return undefined;
    const s = new MotifScratch(model);
    const cs = s.clusterSize;
    // the region: up to three clusters around the anchor, written first when the seed says so
    const at = anchorOf(model, this.seed.anchor);
    const start = Math.floor(at / cs) * cs;
    const span = Math.min(s.size - start, cs * (1 + (this.seed.length % 3)));
    if (span <= 0) return undefined;
    const offs = this.seed.offsets;
    const partial = (i: number): void => {
      // a partial write somewhere in the region (unaligned; sometimes a whole cluster)
      const o = offs[i % offs.length] ?? 0;
      const off = start + (o % span);
      const len = o % 5 === 0 ? cs : 1 + ((o >> 3) % Math.max(1, Math.min(cs, span) - 1));
      s.write(off, len);
    };
    if (this.seed.anchor % 3 !== 0 || model.recent.length === 0) s.write(start + 1, span - 1);
    const name = model.nextSnapshotName();
    if (!s.add({ kind: 'snapshot-create', name })) return undefined;
    partial(0);
    s.read(start, span);
    const apply = (): void => {
      if (!s.model.snapshotApplyCertain() || !s.add({ kind: 'snapshot-apply', name })) return;
      partial(1);
      s.read(start, span);
    };
    const del = (which: string): void => {
      if (!s.model.snapshots.has(which) || !s.add({ kind: 'snapshot-delete', name: which })) return;
      partial(2);
      s.read(start, span);
    };
    switch (this.seed.end) {
      case 'apply':
        apply();
        break;
      case 'delete':
        del(name);
        break;
      case 'apply-delete':
        apply();
        del(name);
        break;
      case 'delete-other': {
        // an older snapshot goes: the clusters it shared with the active tree alone become exclusive
        const older = [...model.snapshots.keys()];
        del(older.length > 0 ? older[this.seed.length % older.length] : name);
        break;
      }
    }
    return s.result(3);
  }

  protected describeSeed(): string {
    return `snapshot cycle (${this.seed.end})`;
  }
}
