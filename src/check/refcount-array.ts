/**
 * The in-memory refcount table ("IMRT" in QEMU's qcow2-refcount.c): one computed refcount per host
 * cluster, saturating at the image's refcount maximum (an overflow is a corruption there).
 */
import { Qcow2Error } from '../errors.ts';
import { maxRefcount } from '../format/tables.ts';

/** Largest number of clusters the checker tracks (256 MiB of counters). */
export const MAX_TRACKED_CLUSTERS = 2 ** 26;

export class RefcountArray {
  private arr: Uint32Array;
  /** Number of clusters covered (QEMU's nb_clusters / refcount_table_size). */
  nb: number;
  readonly max: number;

  constructor(nb: number, refcountOrder: number) {
    if (nb > MAX_TRACKED_CLUSTERS) {
      throw new Qcow2Error('EFBIG', `Image has too many clusters to check (${nb})`, { clusters: nb });
    }
    this.arr = new Uint32Array(Math.max(nb, 16));
    this.nb = nb;
    // Counters are 32-bit: wider refcounts saturate at 2^32 - 1, far above any reachable count.
    this.max = Math.min(maxRefcount(refcountOrder), 0xffffffff);
  }

  get(k: number): number {
    return k < this.nb ? this.arr[k]! : 0;
  }

  set(k: number, v: number): void {
    this.ensure(k + 1);
    this.arr[k] = v;
  }

  /** Grow to cover `n` clusters (new ones zero). */
  ensure(n: number): void {
    if (n <= this.nb) return;
    if (n > MAX_TRACKED_CLUSTERS) {
      throw new Qcow2Error('EFBIG', `Image has too many clusters to check (${n})`, { clusters: n });
    }
    if (n > this.arr.length) {
      const next = new Uint32Array(Math.min(MAX_TRACKED_CLUSTERS, Math.max(n, this.arr.length * 2)));
      next.set(this.arr.subarray(0, this.nb));
      this.arr = next;
    }
    this.nb = n;
  }

  clear(): void {
    this.arr.fill(0);
  }
}
