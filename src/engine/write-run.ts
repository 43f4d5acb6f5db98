/**
 * The host-contiguous run of one guest write request, written by one pwrite: QEMU sends a run of
 * clusters that lie one after another on the host as one request (qcow2_co_pwritev_part over
 * the run handle_alloc / handle_copied return), where a write per cluster would cost a system call
 * per 512-byte cluster of a small-cluster image.
 *
 * The data path queues clusters here instead of writing each at once, and commits them after the
 * run's one write succeeded: clusters written in place need nothing more, and freshly allocated
 * ones then get their L2 entry (and the old entry's reference is dropped), exactly as the data
 * path does after each cluster's own write — the L2 entry still never maps data before the data
 * was written (qcow2.txt's allocation order: data, then the L2 table that points at it). If the
 * run's write fails, every fresh cluster of it goes back to the allocator and the old mappings
 * stay (qcow2_alloc_cluster_abort for the run's clusters, as QEMU fails a run as a whole).
 *
 * Only the queue's bookkeeping lives here; the data path decides what may be queued (no extended
 * L2, no debug-event device; whole sectors when encrypted, the run encrypted in one pass) and how
 * a cluster is committed.
 */
import type { L2Entry } from '../format/tables.ts';

/** A freshly allocated cluster of the run, committed once the run's data is on the host. */
export interface FreshCluster {
  guestCluster: number;
  /** The entry it replaces (its reference is dropped at the commit). */
  old: L2Entry;
  host: number;
}

const EMPTY = new Uint8Array(0);

export class WriteRun {
  /** Where the run starts on the host and how many bytes it has (0: no run). */
  host = 0;
  length = 0;
  /** The request's data and where the run's bytes start in it. */
  private data: Uint8Array = EMPTY;
  private from = 0;
  /** The L2 table (its index) of the run's last fresh cluster. */
  table = -1;
  /** The fresh clusters of the run, in request order. */
  readonly fresh: FreshCluster[] = [];
  /**
   * Host clusters (offsets) whose references the commit will drop: a later cluster of the request
   * whose entry names one of them must see the refcount after that drop, so the run is written
   * and committed first (only on an image that maps one host cluster twice).
   */
  readonly releasing = new Set<number>();

  /** Is there a queued run? */
  get active(): boolean {
    return this.length > 0;
  }

  /** Does a piece at `host` go on from the queued run (bytes and host offsets both adjacent)? */
  continues(host: number): boolean {
    return this.length > 0 && host === this.host + this.length;
  }

  /** The guest offset of the run's first byte (legacy AES numbers its sectors by it). */
  guest = 0;

  /** Start a run with `data[from, from + n)` at `host`, for guest offset `guest`. */
  start(data: Uint8Array, from: number, n: number, host: number, guest: number): void {
    this.data = data;
    this.guest = guest;
    this.from = from;
    this.host = host;
    this.length = n;
  }

  /** The next `n` bytes of the request's data, at the host offset right after the run. */
  extend(n: number): void {
    this.length += n;
  }

  /** The run's bytes (a view of the request's data). */
  bytes(): Uint8Array {
    return this.data.subarray(this.from, this.from + this.length);
  }

  /** Forget the run (after its write and commit, or its failure). */
  clear(): void {
    this.length = 0;
    this.table = -1;
    this.fresh.length = 0;
    this.releasing.clear();
    this.data = EMPTY; // (the request's buffer is not kept alive)
  }
}
