/**
 * `rebase` where a backing file exists (model/backing-files.ts says what the guest and the files
 * hold after each):
 * - `onto-new`: a new file (`base-create`: qcow2 or raw, shorter than, as long as or longer than
 *   the disk, with its own data, partly equal to the current backing file's), then a safe
 *   `rebase -b NEW -F FMT`;
 * - `flatten`: safe `rebase -b ''` (the image then holds everything and has no backing file);
 * - `unsafe-copy`: the backing file converted to a copy (`base-copy`, same or other format), then
 *   `rebase -u -b COPY -F FMT` — moving a base, the common use of -u.
 * Safe rebases change what the image's snapshots would read through, and write in ways the
 * bitmaps record: they wait until the image has neither.
 */
import type { DiskModel } from '../model/disk-model.ts';
import type { BackingFormat, BackingWrite } from '../layout.ts';
import type { Step } from '../steps.ts';
import { StepCommand } from './step-command.ts';

/**
 * A safe rebase compares (and an implementation may copy) the whole disk: kept to disks up to
 * this size, so that a sequence's cost stays in proportion (larger disks meet the other kinds).
 */
export const WHOLE_DISK_STEP_MAX = 128 << 20;

export type RebaseMode = 'onto-new' | 'flatten' | 'unsafe-copy';

export interface RebaseSeed {
  mode: RebaseMode;
  format: BackingFormat;
  /** 0: shorter, 1: as long as the disk, 2: longer. */
  sizeClass: 0 | 1 | 2;
  /** Seeds of the new file's writes (0–3). */
  writes: number[];
  /** Keep a copy of the current backing file's first MiB in the new file (most of it then matches). */
  keepOld: boolean;
}

export class RebaseCommand extends StepCommand {
  constructor(private readonly seed: RebaseSeed) {
    super();
  }

  protected resolve(model: DiskModel): Step[] | undefined {
    if (!model.layout.backing || model.layout.encrypt) return undefined;
    const { mode, format } = this.seed;
    if (mode === 'unsafe-copy') {
      if (!model.base) return undefined;
      const name = model.nextFileName();
      return [
        { kind: 'base-copy', name, format },
        { kind: 'rebase', unsafe: true, name, format },
      ];
    }
    if (model.snapshots.size > 0 || model.bitmaps.size > 0 || model.size > WHOLE_DISK_STEP_MAX)
      return undefined;
    if (mode === 'flatten') return model.base ? [{ kind: 'rebase', unsafe: false, name: null }] : undefined;
    const name = model.nextFileName();
    const size = newSize(model.size, this.seed);
    const writes: BackingWrite[] = [];
    const old = model.base?.disk;
    if (this.seed.keepOld && old) {
      // the old base's leading runs, copied as pattern writes (runs of one byte value)
      const len = Math.min(old.size, size, 1 << 20);
      for (const r of len > 0 ? old.runs(0, len) : [])
        if (r.pattern !== 0 && writes.length < 8) writes.push(r);
    }
    for (const w of this.seed.writes) {
      const offset = (w % Math.max(1, size)) - ((w % Math.max(1, size)) % (w % 3 === 0 ? 1 : 512));
      const length = Math.max(1, Math.min(size - offset, 1 + ((w >> 4) % (4 * model.clusterSize))));
      writes.push({ offset, length, pattern: 1 + ((w >> 2) % 255) });
    }
    return [
      { kind: 'base-create', name, format, size, writes },
      { kind: 'rebase', unsafe: false, name, format },
    ];
  }

  protected describeSeed(): string {
    return `rebase(${this.seed.mode}, ${this.seed.format})`;
  }
}

function newSize(disk: number, seed: RebaseSeed): number {
  const sectors = Math.max(1, Math.ceil(disk / 512));
  const w = seed.writes[0] ?? 0;
  switch (seed.sizeClass) {
    case 0:
      return 512 * Math.max(1, Math.floor(sectors / 2) - (w % Math.max(1, Math.floor(sectors / 2))));
    case 1:
      return sectors * 512;
    case 2:
      return 512 * (sectors + 1 + (w % 64));
  }
}
