/**
 * Images the engine writes are clean for `qemu-img check` (exit 0: no corruption, no leak) and
 * read by `qemu-img convert -O raw` exactly as a plain byte-array model says, for every layout of
 * the matrix; the in-process checker agrees with qemu-img check's exit code.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { ExpectedDisk, layoutMatrix, layoutName, layoutSize, pattern, runs, type Layout } from './model.ts';
import { checkBoth, qemuRaw, sameBytes, tempDir } from '../support/qemu.ts';

const tmp = tempDir('engine-written');
afterAll(() => tmp.cleanup());

function reopen(img: Qcow2Image, file: string): Qcow2Image {
  img.close();
  return Qcow2Image.open(file, { sync: false });
}

function expectReads(img: Qcow2Image, model: ExpectedDisk): void {
  expect(img.size).toBe(model.size);
  expect(sameBytes(img.read(0, img.size), model.bytes)).toBe('equal');
}

function exercise(l: Layout, file: string): ExpectedDisk {
  const cs = l.clusterSize;
  const size = layoutSize(l);
  const model = new ExpectedDisk(size);
  let img = Qcow2Image.create(file, {
    size,
    clusterSize: cs,
    refcountBits: l.refcountBits,
    compat: l.compat,
    compressionType: l.compat === '1.1' ? l.compression : undefined,
    sync: false,
  });
  let seed = 1;
  const write = (offset: number, length: number): void => {
    const d = pattern(length, seed++);
    img.write(offset, d);
    model.write(offset, d);
  };
  try {
    write(0, 3 * cs + 123); // cluster-crossing
    write(cs / 2 + 7, cs + 100); // unaligned, over allocated clusters
    write(4 * cs, 4 * cs + 1000); // large
    expectReads(img, model);
    img = reopen(img, file);
    expectReads(img, model);

    img.writeZeroes(4 * cs + 256, 300); // inside an allocated cluster
    model.zero(4 * cs + 256, 300);
    img.writeZeroes(5 * cs, cs); // whole cluster, kept allocated (v3)
    model.zero(5 * cs, cs);
    img.writeZeroes(6 * cs, cs, { unmap: true });
    model.zero(6 * cs, cs);
    img.writeZeroes(8 * cs - 100, cs + 200, { unmap: true }); // partial, whole, partial
    model.zero(8 * cs - 100, cs + 200);
    write(10 * cs, 3 * cs);
    img.discard(10 * cs + 512, 2 * cs); // partial clusters keep their data
    model.discard(10 * cs + 512, 2 * cs, cs);
    img.discard(20 * cs, 2 * cs); // discarding nothing
    model.discard(20 * cs, 2 * cs, cs);
    expectReads(img, model);
    img = reopen(img, file);
    expectReads(img, model);

    const packed = runs(2 * cs, 7);
    img.writeCompressed(14 * cs, packed);
    model.write(14 * cs, packed);
    const noisy = pattern(cs, 99); // does not compress: stored as a normal cluster
    img.writeCompressed(16 * cs, noisy);
    model.write(16 * cs, noisy);
    expectReads(img, model);
    write(14 * cs + 100, 50); // copy-on-write out of a compressed cluster
    img.writeZeroes(15 * cs, cs); // zeroing a compressed cluster
    model.zero(15 * cs, cs);
    expectReads(img, model);

    const grown = size + 3 * cs + 512;
    img.resize(grown);
    model.resize(grown);
    write(size + cs + 10, cs); // beyond the old end
    expectReads(img, model);
    img = reopen(img, file);
    expectReads(img, model);

    const shrunk = size + cs + 512;
    img.resize(shrunk, { shrink: true });
    model.resize(shrunk);
    expectReads(img, model);
    img.resize(size + 4 * cs); // the tail cut off reads zeros after growing again
    model.resize(size + 4 * cs);
    expectReads(img, model);
    img.discard(size + 2 * cs, 2 * cs); // whole clusters up to the end
    model.discard(size + 2 * cs, 2 * cs, cs);
    expectReads(img, model);
  } finally {
    img.close();
  }
  return model;
}

describe('images written by the engine are clean for qemu-img check and read by qemu as the model says', () => {
  it.each(layoutMatrix().map((l) => [layoutName(l), l] as [string, Layout]))('%s', (_name, l) => {
    const file = tmp.file(`${l.clusterSize}-${l.refcountBits}-${l.compat}-${l.compression}.qcow2`);
    const model = exercise(l, file);
    const c = checkBoth(file);
    expect(c.qemuJson?.['check-errors']).toBe(0);
    expect(c.qemu).toBe(0);
    expect(c.engine).toBe(c.qemu);
    expect(sameBytes(qemuRaw(file), model.bytes)).toBe('equal');
  });

  it('packs compressed clusters into a shared host cluster without overflowing small refcounts', () => {
    for (const refcountBits of [1, 2, 16]) {
      const file = tmp.file(`packed-${refcountBits}.qcow2`);
      const cs = 4096;
      const model = new ExpectedDisk(1024 * 1024);
      const img = Qcow2Image.create(file, { size: model.size, clusterSize: cs, refcountBits, sync: false });
      try {
        for (let c = 0; c < 12; c++) {
          const d = runs(cs, c);
          img.writeCompressed(c * cs, d);
          model.write(c * cs, d);
        }
        expectReads(img, model);
      } finally {
        img.close();
      }
      const r = checkBoth(file);
      expect(r.qemu).toBe(0);
      expect(r.engine).toBe(0);
      expect(sameBytes(qemuRaw(file), model.bytes)).toBe('equal');
    }
  });

  it('preallocated images (metadata, falloc, full) are clean and read zeros', () => {
    for (const preallocation of ['metadata', 'falloc', 'full'] as const) {
      const file = tmp.file(`prealloc-${preallocation}.qcow2`);
      const img = Qcow2Image.create(file, {
        size: 2 * 1024 * 1024,
        clusterSize: 65536,
        preallocation,
        sync: false,
      });
      const d = pattern(5000, 3);
      img.write(70000, d);
      img.close();
      const model = new ExpectedDisk(2 * 1024 * 1024);
      model.write(70000, d);
      const r = checkBoth(file);
      expect(r.qemu).toBe(0);
      expect(r.engine).toBe(0);
      expect(sameBytes(qemuRaw(file), model.bytes)).toBe('equal');
    }
  });
});
