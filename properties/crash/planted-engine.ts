/**
 * The engine with a planted ordering bug, for the test that crashtest finds one: select it with
 * `QCOW2_ENGINE=properties/crash/planted-engine.ts`. Every image it opens sits on a device that
 * holds back writes to refcount blocks past the next flush: the engine writes the refcount block,
 * flushes, then writes the L2 table pointing at the new cluster; this device lets the flush pass
 * without the refcount block and writes it only before the following flush. An L2 table thus
 * reaches the disk before the refcount block covering its new cluster, with no flush between — a
 * crash in between leaves a cluster in use with refcount 0. Reads see the held-back writes, so the
 * engine itself runs correctly and only crash states show the bug.
 */
import type { BlockDevice } from '../../src/io/device.ts';
import type { CreateOptions, Image, OpenOptions } from '../../src/api.ts';
import { Qcow2Image as Real } from '../../src/image.ts';
import { metadataMap, regionOf } from './regions.ts';

export class RefcountDeferringDevice implements BlockDevice {
  private readonly inner: BlockDevice;
  private held: { buf: Uint8Array; offset: number }[] = [];
  /** Writes held back from the current flush segment, written before the next flush. */
  private due: { buf: Uint8Array; offset: number }[] = [];

  constructor(inner: BlockDevice) {
    this.inner = inner;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get name(): string {
    return this.inner.name;
  }

  read(buf: Uint8Array, offset: number): void {
    this.inner.read(buf, offset);
    for (const w of [...this.due, ...this.held]) {
      const from = Math.max(offset, w.offset);
      const to = Math.min(offset + buf.length, w.offset + w.buf.length);
      if (from < to) buf.set(w.buf.subarray(from - w.offset, to - w.offset), from - offset);
    }
  }

  write(buf: Uint8Array, offset: number): void {
    const map = metadataMap((o, l) => {
      const b = new Uint8Array(l);
      this.read(b, o);
      return b;
    });
    if (regionOf(map, offset) === 'refcount-block') this.held.push({ buf: buf.slice(), offset });
    else this.inner.write(buf, offset);
  }

  size(): number {
    let n = this.inner.size();
    for (const w of [...this.due, ...this.held]) n = Math.max(n, w.offset + w.buf.length);
    return n;
  }

  truncate(length: number): void {
    this.inner.truncate(length);
  }

  flush(): void {
    // The bug: what was held back before this flush is written after it, with the next segment.
    for (const w of this.due) this.inner.write(w.buf, w.offset);
    this.due = this.held;
    this.held = [];
    this.inner.flush();
  }

  close(): void {
    for (const w of [...this.due, ...this.held]) this.inner.write(w.buf, w.offset);
    this.due = [];
    this.held = [];
    this.inner.flush();
    this.inner.close();
  }
}

type DeviceOpen = OpenOptions & { filename?: string };

export const Qcow2Image = {
  create(path: string, opts: CreateOptions): Image {
    return Real.create(path, opts);
  },
  open(path: string, opts?: OpenOptions): Image {
    return Real.open(path, opts);
  },
  openDevice(dev: BlockDevice, opts?: DeviceOpen): Image {
    return Real.openDevice(new RefcountDeferringDevice(dev), opts);
  },
};
