/**
 * Block nodes other than a file, as block devices under a format:
 * - `NullDevice`: QEMU's null-co driver, a device of a given size that takes every write and
 *   reads zeros (`read-zeroes=on`; QEMU leaves the buffer untouched otherwise, here zeros too);
 * - `RawNodeDevice`: a raw format node used as a protocol (`data-file: {driver: raw, file: ...}`):
 *   passes requests through, raising raw-format.c's `read_aio`/`write_aio` debug events below it;
 * - `DiskDevice`: any guest disk used as a protocol (a format over a format: `file.driver=qcow2`).
 * A debug event raised on a node without a handler goes down to its child (bdrv_debug_event).
 */
import type { GuestDisk } from '../api.ts';
import { IoError } from '../errors.ts';
import type { BlockDevice } from './device.ts';

export class NullDevice implements BlockDevice {
  readonly readOnly = false;
  readonly name = 'null-co://';
  constructor(
    private length: number,
    readonly readZeroes: boolean,
  ) {}
  read(buf: Uint8Array): void {
    buf.fill(0);
  }
  write(): void {}
  size(): number {
    return this.length;
  }
  truncate(length: number): void {
    this.length = length;
  }
  flush(): void {}
  close(): void {}
  /** null-co reports every block as data unless it reads zeros (null_co_block_status). */
  extent(offset: number, length: number): { data: boolean; length: number } {
    return { data: !this.readZeroes, length: Math.max(0, Math.min(length, this.length - offset)) };
  }
}

export class RawNodeDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice) {}
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get name(): string {
    return this.inner.name;
  }
  event(ev: string): void {
    this.inner.event?.(ev);
  }
  read(buf: Uint8Array, offset: number): void {
    this.inner.event?.('read_aio');
    this.inner.read(buf, offset);
  }
  write(buf: Uint8Array, offset: number): void {
    this.inner.event?.('write_aio');
    this.inner.write(buf, offset);
  }
  size(): number {
    return this.inner.size();
  }
  truncate(length: number): void {
    this.inner.truncate(length);
  }
  flush(): void {
    this.inner.flush();
  }
  close(): void {
    this.inner.close();
  }
  extent(offset: number, length: number): ReturnType<NonNullable<BlockDevice['extent']>> {
    return this.inner.extent?.(offset, length);
  }
  allocatedBytes(): number | undefined {
    return this.inner.allocatedBytes?.();
  }
}

export class DiskDevice implements BlockDevice {
  constructor(readonly disk: GuestDisk) {}
  get readOnly(): boolean {
    return this.disk.readOnly;
  }
  get name(): string {
    return this.disk.filename;
  }
  event(ev: string): void {
    const dev = (this.disk as { device?: BlockDevice }).device;
    dev?.event?.(ev);
  }
  read(buf: Uint8Array, offset: number): void {
    const end = Math.min(offset + buf.length, this.disk.size);
    if (offset < end) this.disk.readInto(buf.subarray(0, end - offset), offset);
    if (end - offset < buf.length) buf.fill(0, Math.max(0, end - offset));
  }
  write(buf: Uint8Array, offset: number): void {
    if (offset + buf.length > this.disk.size) this.disk.resize(offset + buf.length);
    this.disk.write(offset, buf);
  }
  size(): number {
    return this.disk.size;
  }
  truncate(length: number): void {
    this.disk.resize(length, { shrink: true });
  }
  flush(): void {
    this.disk.flush();
  }
  close(): void {
    this.disk.close();
  }
}

/**
 * QEMU's quorum driver as a protocol: writes go to every child; a read is good when at least
 * `threshold` children return the same bytes (quorum_vote), else it fails with EIO.
 */
export class QuorumDevice implements BlockDevice {
  constructor(
    readonly children: BlockDevice[],
    readonly threshold: number,
  ) {}
  get readOnly(): boolean {
    return this.children.some((c) => c.readOnly);
  }
  get name(): string {
    return 'quorum';
  }
  read(buf: Uint8Array, offset: number): void {
    const reads = this.children.map((c) => {
      const b = new Uint8Array(buf.length);
      c.read(b, offset);
      return b;
    });
    for (const r of reads) {
      if (reads.filter((x) => Buffer.compare(x, r) === 0).length >= this.threshold) {
        buf.set(r);
        return;
      }
    }
    throw new IoError('EIO_READ', `quorum: no ${this.threshold} children agree at offset ${offset}`, {
      offset,
      errno: 'EIO',
    });
  }
  write(buf: Uint8Array, offset: number): void {
    for (const c of this.children) c.write(buf, offset);
  }
  size(): number {
    return Math.min(...this.children.map((c) => c.size()));
  }
  truncate(length: number): void {
    for (const c of this.children) c.truncate(length);
  }
  flush(): void {
    for (const c of this.children) c.flush();
  }
  close(): void {
    for (const c of this.children) c.close();
  }
}
