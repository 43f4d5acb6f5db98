/** A raw disk image: guest offset = file offset. Used for raw backing files and `-f raw`. */
import type { BlockStatus, GuestDisk } from './api.ts';
import { ArgumentError, Qcow2Error } from './errors.ts';
import type { BlockDevice } from './io/device.ts';
import { checkShrink } from './engine/options.ts';

export class RawImage implements GuestDisk {
  readonly format = 'raw' as const;
  readonly filename: string;
  readonly readOnly: boolean;
  private closed = false;

  constructor(
    readonly device: BlockDevice,
    opts: { filename?: string; readOnly?: boolean } = {},
  ) {
    this.filename = opts.filename ?? device.name;
    this.readOnly = opts.readOnly ?? device.readOnly;
  }

  /**
   * QEMU's block layer counts a file's length in whole 512-byte sectors (bdrv_getlength is
   * total_sectors * BDRV_SECTOR_SIZE): a raw file of 1000001 bytes is a disk of 1000448, its tail
   * past the end of the file reading as zeros (qemu-img info's virtual-size, map, backing reads).
   */
  get size(): number {
    return Math.ceil(this.device.size() / 512) * 512;
  }

  private check(offset: number, length: number, write: boolean): void {
    if (this.closed) throw new Qcow2Error('CLOSED', 'The image is closed', { filename: this.filename });
    if (write && this.readOnly)
      throw new Qcow2Error('READ_ONLY', `Image '${this.filename}' is open read-only`, {});
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new ArgumentError(
        'OUT_OF_RANGE',
        `Request out of range: offset ${offset}, length ${length}, disk size ${this.size}`,
        { offset, length },
      );
    }
  }

  read(offset: number, length: number): Uint8Array {
    this.check(offset, length, false);
    const out = new Uint8Array(length);
    this.device.read(out, offset);
    return out;
  }

  readInto(out: Uint8Array, offset: number): void {
    this.check(offset, out.length, false);
    this.device.read(out, offset);
  }

  write(offset: number, data: Uint8Array): void {
    this.check(offset, data.length, true);
    this.device.write(data, offset);
  }

  writeZeroes(offset: number, length: number): void {
    this.check(offset, length, true);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let done = 0; done < length; done += chunk.length) {
      this.device.write(chunk.subarray(0, Math.min(chunk.length, length - done)), offset + done);
    }
  }

  /** As QEMU's file driver: the range is deallocated where the device can (then reads as zeros). */
  discard(offset: number, length: number): void {
    this.check(offset, length, true);
    this.device.discard?.(offset, length);
  }

  resize(newSize: number, opts: { shrink?: boolean } = {}): void {
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `Image '${this.filename}' is open read-only`, {});
    checkShrink(this.size, newSize, opts.shrink ?? false);
    this.device.truncate(newSize);
  }

  blockStatus(offset: number, length: number): BlockStatus {
    this.check(offset, length, false);
    // Holes of a sparse file read as zeros and hold no data (QEMU file-posix find_allocation).
    // Past the end of the file (the rest of its last sector) SEEK_DATA fails with ENXIO: a
    // trailing hole, BDRV_BLOCK_ZERO (raw_co_block_status).
    const end = this.device.size();
    const e =
      length > 0
        ? offset >= end
          ? { data: false, length }
          : this.device.extent?.(offset, length)
        : undefined;
    const data = e?.data ?? true;
    return {
      offset,
      length: e?.length ?? length,
      depth: 0,
      present: true,
      zero: !data,
      data,
      compressed: false,
      hostOffset: offset,
      filename: this.filename,
    };
  }

  flush(): void {
    if (!this.readOnly) this.device.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.device.close();
  }
}
