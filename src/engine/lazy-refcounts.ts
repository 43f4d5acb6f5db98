/**
 * Lazy refcounts, as QEMU 7.2 keeps them (qcow2.txt: compatible feature bit 0 "lazy refcounts",
 * incompatible feature bit 0 "dirty bit: refcounts may be inconsistent, a check is required").
 *
 * - In use (`enabled`: the runtime option `lazy-refcounts`, by default the compatible bit), the
 *   dirty bit is written and flushed before the session's first change (QEMU's qcow2_mark_dirty,
 *   before the first L2 update).
 * - While the dirty bit is set on disk the refcounts there need not be exact (QEMU's
 *   qcow2_need_accurate_refcounts): a flush writes guest data, L2 tables, the L1 table and the
 *   header, but not the refcount blocks, and L2 tables no longer wait for them. Refcount blocks
 *   reach the disk when the cache evicts them, when metadata is allocated (an L2 table, a relocated
 *   table: QEMU's l2_allocate and qcow2_grow_l1_table flush the refcount cache), and before the bit
 *   is cleared.
 * - Clearing the bit (a clean close, `reopen -o lazy-refcounts=off`, amend, the end of an unordered
 *   change) writes every table and refcount block, flushes, then clears it (flushed): QEMU's
 *   qcow2_mark_clean.
 *
 * So a crash (qemu-io `sigraise 9`) leaves what QEMU's leaves: the dirty bit set and data clusters
 * whose refcounts are still 0 on disk. A read-write open of a dirty image repairs it first (QEMU's
 * qcow2_do_open runs qcow2_check with BDRV_FIX_ERRORS | BDRV_FIX_LEAKS and prints what the check
 * prints), and `check -r all` rebuilds the refcounts.
 */
import * as C from '../format/constants.ts';
import type { Header } from '../format/header.ts';
import type { BlockDevice } from '../io/device.ts';
import type { WriteBackTarget } from './cache.ts';

/** Where the messages of an automatic repair at open go (QEMU prints them to stderr). */
export type RepairReporter = (lines: readonly string[]) => void;

let repairReporter: RepairReporter | undefined;

/** The CLI routes the repair messages of a dirty image's open to stderr, as qemu-img/qemu-io do. */
export function setRepairReporter(r: RepairReporter | undefined): void {
  repairReporter = r;
}

export function reportRepair(lines: readonly string[]): void {
  if (lines.length > 0) repairReporter?.(lines);
}

/** Is the dirty bit (incompatible bit 0) set? */
export function isDirty(h: Header): boolean {
  return (h.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n;
}

export class LazyRefcounts {
  /** QEMU's use_lazy_refcounts. */
  enabled: boolean;

  constructor(
    private readonly header: Header,
    private readonly device: BlockDevice,
    private readonly rc: WriteBackTarget,
  ) {
    this.enabled = (header.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n;
  }

  /** Refcount blocks may lag behind the tables on disk: the dirty bit is set. */
  get deferring(): boolean {
    return isDirty(this.header);
  }

  /**
   * The refcount layer as the L2 cache's write-back dependency: while the dirty bit is set, L2
   * tables are written without the refcount blocks first (step 2 → 3 of the flush order holds only
   * for accurate refcounts).
   */
  dependency(): WriteBackTarget {
    return {
      isDirty: () => !this.deferring && this.rc.isDirty(),
      writeBack: () => this.rc.writeBack(),
    };
  }

  /**
   * Refcounts of newly allocated metadata go to disk at once, even while deferring (QEMU's
   * l2_allocate and qcow2_grow_l1_table flush the refcount block cache), so only data clusters are
   * left uncounted by a crash.
   */
  afterMetadataAlloc(): void {
    if (!this.deferring || !this.rc.isDirty()) return;
    this.rc.writeBack();
    this.device.flush();
  }

  /** Every refcount block on disk (before the dirty bit may be cleared). */
  writeRefcounts(): void {
    if (!this.rc.isDirty()) return;
    this.rc.writeBack();
    this.device.flush();
  }
}
