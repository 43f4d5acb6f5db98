/**
 * Compressed clusters share host clusters, and a host cluster's refcount counts every compressed
 * cluster in it (qcow2_alloc_bytes packs them up to refcount_max). `qemu-img snapshot -c` adds one
 * reference per L2 entry, so with refcount_bits=8 QEMU 7.2 refuses it with EINVAL (`-22 (Invalid
 * argument)`) once one host cluster holds more than 127 compressed clusters: found by
 * `qcow2 fuzz --impl qemu-io --seed 11` (sequence 34, 8 KiB clusters, a 4 MiB `write -c` of a
 * repeated byte, then `snapshot -c s1`). The model must not call such a snapshot certain, must
 * still call the boundary case (127) certain, and the engine must refuse the same way, cleanly.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../src/image.ts';
import { errorCode, qemuCheck, qemuCreate, qemuIo, run, tempDir } from '../test/support/qemu.ts';
import { DiskModel, NO_QUIRKS } from './model/disk-model.ts';
import type { ImageLayout } from './layout.ts';

const tmp = tempDir('snapshot-refcount-room');
afterAll(() => tmp.cleanup());

const CS = 8192;
const SIZE = 8 << 20;
const layout: ImageLayout = {
  compat: '1.1',
  clusterBits: 13,
  refcountBits: 8,
  extendedL2: false,
  compressionType: 'zlib',
  lazyRefcounts: false,
  size: SIZE,
};

/** A fresh image with `clusters` compressed clusters of one repeated byte from offset 0. */
function compressedImage(name: string, clusters: number): string {
  const file = tmp.file(name);
  qemuCreate(file, SIZE, { opts: 'compat=1.1,cluster_size=8192,refcount_bits=8' });
  qemuIo(file, [`write -c -P 0x9a 0 ${clusters * CS}`]);
  return file;
}

function modelAfter(clusters: number): DiskModel {
  const model = new DiskModel(layout, NO_QUIRKS);
  model.writeCompressed({ kind: 'write-compressed', offset: 0, length: clusters * CS, pattern: 0x9a });
  return model;
}

describe('snapshot -c against the refcount width with compressed clusters (refcount_bits=8)', () => {
  it('128 compressed clusters: QEMU refuses (-22), the model is not certain, the engine refuses cleanly', () => {
    const file = compressedImage('over.qcow2', 128);
    const engineCopy = tmp.file('over-engine.qcow2');
    fs.copyFileSync(file, engineCopy);

    const r = run('qemu-img', ['snapshot', '-c', 's1', file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("Could not create snapshot 's1': -22 (Invalid argument)");
    expect(modelAfter(128).snapshotCreateCertain()).toBe(false);

    const before = fs.readFileSync(engineCopy);
    const img = Qcow2Image.open(engineCopy, { sync: false });
    try {
      expect(errorCode(() => img.createSnapshot('s1'))).toBe('REFCOUNT_OVERFLOW');
      expect(img.listSnapshots()).toEqual([]);
    } finally {
      img.close();
    }
    expect(Buffer.compare(fs.readFileSync(engineCopy), before)).toBe(0);
    expect(qemuCheck(engineCopy).status).toBe(0);
  });

  it('127 compressed clusters: QEMU creates the snapshot and the model calls it certain', () => {
    const file = compressedImage('fits.qcow2', 127);
    const r = run('qemu-img', ['snapshot', '-c', 's1', file]);
    expect(r.status).toBe(0);
    expect(qemuCheck(file).status).toBe(0);
    expect(modelAfter(127).snapshotCreateCertain()).toBe(true);
  });

  it('existing snapshots count: 64 compressed clusters take two snapshots, QEMU refuses the third', () => {
    const file = compressedImage('third.qcow2', 64);
    const model = modelAfter(64);
    const accepted: boolean[] = [];
    const certain: boolean[] = [];
    for (const name of ['s1', 's2', 's3']) {
      certain.push(model.snapshotCreateCertain());
      const r = run('qemu-img', ['snapshot', '-c', name, file]);
      accepted.push(r.status === 0);
      if (r.status === 0) model.createSnapshot(name);
    }
    // 64 × 2 = 128 and 64 × 3 = 192 fit in 255; 64 × 4 = 256 does not
    expect(accepted).toEqual([true, true, false]);
    expect(certain).toEqual([true, true, false]);
  });

  it('convert -c makes every cluster of the disk count', () => {
    const model = modelAfter(1);
    expect(model.snapshotCreateCertain()).toBe(true);
    model.converted(false);
    expect(model.snapshotCreateCertain()).toBe(true);
    model.converted(true);
    expect(model.snapshotCreateCertain()).toBe(false);
  });
});
