/**
 * A shrink to a size inside a cluster zeroes the rest of that cluster, so that growing again reads
 * zeros there (QEMU 7.2 leaves the old bytes: known-bugs/qemu-7.2-stale-tail-after-shrink-grow).
 * A cluster the image owns alone is zeroed in place; one a snapshot shares is copied first.
 */
import { describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { MemoryDevice } from '../../src/io/device.ts';
import { checkImage } from '../../src/check/index.ts';

const CS = 65536;

function pattern(n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 13 + 5) & 0xff || 1;
  return p;
}

function expectShrunkTail(img: Qcow2Image, data: Uint8Array, keep: number): void {
  img.resize(keep, { shrink: true });
  img.resize(3 * CS);
  const out = img.read(0, 3 * CS);
  expect(Buffer.from(out.subarray(0, keep)).equals(Buffer.from(data.subarray(0, keep)))).toBe(true);
  expect(out.subarray(keep).every((b) => b === 0)).toBe(true);
}

describe('shrink inside a cluster', () => {
  it('zeroes the tail of an exclusively owned cluster in place', () => {
    const dev = new MemoryDevice();
    const img = Qcow2Image.createOnDevice(dev, { size: 3 * CS });
    const data = pattern(3 * CS);
    img.write(0, data);
    const before = img.blockStatus(CS, 1).hostOffset;
    expectShrunkTail(img, data, CS + 1024);
    expect(img.blockStatus(CS, 1).hostOffset).toBe(before); // same host cluster
    img.close();
    expect(checkImage(dev).exitCode).toBe(0);
  });

  it('copies a cluster a snapshot shares before zeroing its tail, and the snapshot keeps its data', () => {
    const dev = new MemoryDevice();
    const img = Qcow2Image.createOnDevice(dev, { size: 3 * CS });
    const data = pattern(3 * CS);
    img.write(0, data);
    img.createSnapshot('s');
    const before = img.blockStatus(CS, 1).hostOffset;
    expectShrunkTail(img, data, CS + 1024);
    expect(img.blockStatus(CS, 1).hostOffset).not.toBe(before);
    img.applySnapshot('s');
    expect(Buffer.from(img.read(0, 3 * CS)).equals(Buffer.from(data))).toBe(true);
    img.close();
    expect(checkImage(dev).exitCode).toBe(0);
  });
});
