/**
 * The VM-state area: where a VM's saved RAM and device state lives next to the guest disk
 * (QEMU's bdrv_save_vmstate / bdrv_load_vmstate, qemu-io `write -b` / `read -b`). It is not a
 * structure of its own: QEMU maps it through the same active L1/L2 tables as the guest disk,
 * starting at the first L1 entry the disk does not use (qcow2_vm_state_offset:
 * l1_vm_state_index << (cluster_bits + l2_bits), with l1_vm_state_index = size_to_l1(size)).
 * The L1 table grows past the disk's entries as VM state is written (qcow2_grow_l1_table's
 * non-exact growth, by half again each step), so an internal snapshot's copy of the L1 carries the
 * VM state with it, and applying the snapshot brings it back.
 *
 * It does not touch refcounts or tables itself: writes and reads go through the data path, L1
 * growth through the cluster map, the discard after a snapshot through cluster-ops.
 */
import { ArgumentError, Qcow2Error } from '../errors.ts';
import * as C from '../format/constants.ts';
import { l1EntriesFor } from '../format/header.ts';
import type { ClusterOps } from './cluster-ops.ts';
import type { DataPath } from './data-path.ts';
import type { ImageState } from './state.ts';

/** QEMU's QCOW_MAX_L1_SIZE: an L1 table of at most 32 MiB. */
const MAX_L1_BYTES = 32 * 1024 * 1024;

export class VmState {
  constructor(
    private readonly s: ImageState,
    private readonly dp: DataPath,
    private readonly ops: ClusterOps,
  ) {}

  /** Guest offset where the VM-state area starts: the first L1 entry past the disk's. */
  offset(): number {
    const l2Entries = this.s.clusterSize / (this.s.extendedL2 ? C.L2E_SIZE_EXTENDED : C.L2E_SIZE_NORMAL);
    return l1EntriesFor(this.s.size, this.s.clusterBits, this.s.extendedL2) * this.s.clusterSize * l2Entries;
  }

  write(pos: number, data: Uint8Array): void {
    const at = this.place(pos, data.length);
    if (data.length === 0) return;
    const needed = l1EntriesFor(at + data.length, this.s.clusterBits, this.s.extendedL2);
    if (needed > this.s.map.l1Size) this.s.map.growL1(grownL1Size(this.s.map.l1Size, needed));
    this.dp.writeRange(at, data);
  }

  read(pos: number, length: number): Uint8Array {
    const at = this.place(pos, length);
    const out = new Uint8Array(length);
    // Beyond the L1 table nothing is mapped: the cluster map reads those clusters as unallocated.
    this.dp.readRange(out, at);
    return out;
  }

  /**
   * After a snapshot that records `size` bytes of VM state, QEMU drops the state from the active
   * tree (qcow2_snapshot_create: it "hurts by causing expensive COW for the next snapshot"); the
   * snapshot's own L1 copy keeps it.
   */
  dropAfterSnapshot(size: number): void {
    if (size <= 0) return;
    const cs = this.s.clusterSize;
    const start = this.offset();
    const end = Math.min(start + Math.ceil(size / cs) * cs, this.mappedEnd());
    if (end > start) this.ops.discard(start, end - start, 'never'); // QCOW2_DISCARD_NEVER
  }

  /** The end of what the active L1 table can map. */
  private mappedEnd(): number {
    const l2Entries = this.s.clusterSize / (this.s.extendedL2 ? C.L2E_SIZE_EXTENDED : C.L2E_SIZE_NORMAL);
    return this.s.map.l1Size * this.s.clusterSize * l2Entries;
  }

  /** The guest offset of a VM-state request, checked as qcow2_check_vmstate_request does. */
  private place(pos: number, length: number): number {
    const at = this.offset() + pos;
    if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(length) || pos < 0 || length < 0) {
      throw new ArgumentError(
        'OUT_OF_RANGE',
        `VM state request out of range: offset ${pos}, length ${length}`,
        {
          offset: pos,
          length,
        },
      );
    }
    if (!Number.isSafeInteger(at + length)) {
      throw new Qcow2Error(
        'IMAGE_TOO_BIG',
        `VM state request beyond what the engine can address: offset ${pos}`,
        {
          offset: pos,
          length,
        },
      );
    }
    const needed = l1EntriesFor(at + length, this.s.clusterBits, this.s.extendedL2);
    if (needed * 8 > MAX_L1_BYTES) {
      // qcow2_grow_l1_table: -EFBIG
      throw new Qcow2Error('L1_TOO_LARGE', `VM state at offset ${pos} would need an L1 table over 32 MiB`, {
        offset: pos,
        length,
      });
    }
    return at;
  }
}

/** qcow2_grow_l1_table(…, exact_size=false): grow by half again until `min` entries fit. */
function grownL1Size(current: number, min: number): number {
  let n = Math.max(1, current);
  while (n < min) n = Math.ceil((n * 3) / 2);
  return Math.min(n, MAX_L1_BYTES / 8);
}
