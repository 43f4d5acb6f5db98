/**
 * The VM-state area's model (qemu-io `write -b` / `read -b`). QEMU maps VM state through the
 * active L1 table past the disk: guest address `vmStateOffset(size) + pos`, where the offset is the
 * disk size rounded up to what one L1 entry covers (block/qcow2.h qcow2_vm_state_offset). So the
 * model keeps VM-state bytes by absolute address, in 512-byte sectors, and follows what that
 * shared address space implies:
 *   - a snapshot's L1 copy carries the VM state; applying it brings that state back;
 *   - growing the disk turns VM state below the new size into guest data (the area moves up);
 *     QEMU zero-fills the new area instead when a longer backing file would show through;
 *   - shrinking frees every L1 entry past the new size's, VM state included;
 *   - `qemu-img convert` copies the disk only.
 */
import type { ImageLayout } from '../layout.ts';

export const SECTOR = 512;

export class VmStateModel {
  /** Absolute guest address / 512 → the sector's bytes (absent: zeros). */
  private sectors = new Map<number, Uint8Array>();
  private readonly saved = new Map<string, Map<number, Uint8Array>>();

  clone(): VmStateModel {
    const c = new VmStateModel();
    c.sectors = new Map(this.sectors);
    for (const [n, m] of this.saved) c.saved.set(n, m);
    return c;
  }

  get empty(): boolean {
    return this.sectors.size === 0;
  }

  write(base: number, pos: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i += SECTOR)
      this.sectors.set((base + pos + i) / SECTOR, data.slice(i, i + SECTOR));
  }

  read(base: number, pos: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i += SECTOR) {
      const s = this.sectors.get((base + pos + i) / SECTOR);
      if (s) out.set(s, i);
    }
    return out;
  }

  /**
   * The disk went from `oldSize` to `newSize`: returns the VM-state sectors that became guest data
   * (absolute address → bytes) for the caller to put into the disk model.
   */
  resized(oldSize: number, newSize: number, zeroFilled: boolean): Map<number, Uint8Array> {
    const exposed = new Map<number, Uint8Array>();
    if (newSize < oldSize) {
      this.sectors.clear();
      return exposed;
    }
    for (const [s, bytes] of [...this.sectors]) {
      const at = s * SECTOR;
      if (at >= oldSize && at < newSize) {
        this.sectors.delete(s);
        if (!zeroFilled) exposed.set(at, bytes);
      }
    }
    return exposed;
  }

  snapshotCreated(name: string): void {
    this.saved.set(name, new Map(this.sectors));
  }

  /**
   * The VM-state sectors a snapshot's L1 copy maps in [from, to) (absolute guest addresses, in
   * order): `qemu-img convert -l snapshot.name=S` exports the image's current virtual size through
   * the snapshot's L1 table, so past the snapshot's own disk it shows these bytes, not zeros.
   */
  savedIn(name: string, from: number, to: number): [number, Uint8Array][] {
    return [...(this.saved.get(name) ?? [])]
      .map(([s, bytes]): [number, Uint8Array] => [s * SECTOR, bytes])
      .filter(([at]) => at >= from && at < to)
      .sort((a, b) => a[0] - b[0]);
  }

  snapshotApplied(name: string): void {
    this.sectors = new Map(this.saved.get(name) ?? []);
  }

  snapshotDeleted(name: string): void {
    this.saved.delete(name);
  }

  converted(): void {
    this.sectors.clear();
    this.saved.clear();
  }
}

/** qcow2_vm_state_offset: the disk size rounded up to one L1 entry's reach. */
export function vmStateOffset(layout: ImageLayout, size: number): number {
  const cs = 2 ** layout.clusterBits;
  const reach = cs * (cs / (layout.extendedL2 ? 16 : 8));
  return Math.ceil(size / reach) * reach;
}
