/**
 * Block status runs of one disk, asked once per run, for walks that go through a disk in pieces
 * smaller than its runs (compare's 1 MiB reads, convert's clusters). Asking block status again at
 * each piece would coalesce the rest of the run again every time: quadratic in a run's clusters
 * (convert -O qcow2 of a 64 MiB fully written image took 7.6 s against qemu-img's 0.1 s). Any part
 * of a run has the run's status, its host offset moved by the distance into the run.
 */
import type { BlockStatus, GuestDisk } from '../api.ts';

export class StatusRuns {
  private run: BlockStatus | undefined;

  /** Runs of `d` up to `limit` (bytes). */
  constructor(
    private readonly d: GuestDisk,
    private readonly limit: number,
  ) {}

  /** The status at `off` and the rest of its run from there (as `d.blockStatus(off, limit - off)`). */
  at(off: number): BlockStatus {
    const r = this.run;
    if (r === undefined || off < r.offset || off >= r.offset + r.length) {
      this.run = this.d.blockStatus(off, this.limit - off);
      return this.run;
    }
    const into = off - r.offset;
    const s: BlockStatus = { ...r, offset: off, length: r.length - into };
    if (r.hostOffset !== undefined) s.hostOffset = r.hostOffset + into;
    return s;
  }
}
