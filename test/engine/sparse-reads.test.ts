/**
 * Reads of unallocated runs cost the number of runs, not of clusters: a run of clusters with no
 * L2 table or all-zero L2 entries reads as zeros in one step, or from the backing disk in one read
 * (zeros past the backing file's end). The bytes must be `qemu-img convert -O raw`'s, whatever
 * the chunking of the reads: sparse images with small clusters, a raw backing file that ends
 * mid-cluster, a qcow2 backing file under an extended-L2 overlay. Runs of plain zero clusters (bare
 * zero-flag entries) read as zeros in one fill, the backing file's data under them hidden.
 */
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/open.ts';
import { Qcow2Image } from '../../src/image.ts';
import { RawImage } from '../../src/raw.ts';
import { FileDevice } from '../../src/io/device.ts';
import type { GuestDisk } from '../../src/api.ts';
import { qemuCreate, qemuIo, qemuRaw, must, sameBytes, tempDir } from '../support/qemu.ts';

const tmp = tempDir('sparse-reads');
afterAll(() => tmp.cleanup());

const KiB = 1024;
const MiB = 1024 * KiB;

/** The whole disk read in chunks of `chunk` bytes (the last one shorter). */
function readAll(disk: GuestDisk, chunk: number): Uint8Array {
  const out = new Uint8Array(disk.size);
  for (let off = 0; off < disk.size; off += chunk)
    disk.readInto(out.subarray(off, Math.min(disk.size, off + chunk)), off);
  return out;
}

function compareChunked(file: string): void {
  const expected = qemuRaw(file);
  const disk = openImage(file, { readOnly: true });
  try {
    expect(disk.size).toBe(expected.length);
    // Whole disk at once, and chunks that start and end mid-cluster and mid-run.
    for (const chunk of [disk.size, 1 * MiB, 64 * KiB + 333, 3 * KiB + 7])
      expect(sameBytes(readAll(disk, chunk), expected), `chunk ${chunk}`).toBe('equal');
  } finally {
    disk.close();
  }
}

describe('reads of unallocated runs', () => {
  it('a sparse image with 1 KiB clusters and a few allocated and zero clusters', () => {
    const file = path.join(tmp.dir, 'sparse.qcow2');
    qemuCreate(file, 64 * MiB, { opts: 'cluster_size=1024' });
    qemuIo(file, [
      'write -P 0x5a 100k 4k',
      'write -P 0x33 5000k 65k',
      'write -z 6M 8k', // zero clusters (allocated by the write below first)
      'write -P 0x44 7M 3k',
      'write -z 7M 1k', // an allocated cluster turned to zeros
      `write -P 0x07 ${64 * MiB - 1500} 1500`, // the disk's last clusters
    ]);
    compareChunked(file);
  });

  it('over a raw backing file that ends mid-cluster, with runs that cross its end', () => {
    const back = path.join(tmp.dir, 'back.raw');
    must('qemu-img', ['create', '-q', '-f', 'raw', back, String(5 * MiB + 700)]);
    qemuIo(
      back,
      [
        'write -P 0x11 0 300k',
        'write -P 0x22 2M 5k',
        'write -P 0x44 3M 1100k',
        `write -P 0x33 ${5 * MiB - 1000} 1700`,
      ],
      {
        format: 'raw',
      },
    );
    const over = path.join(tmp.dir, 'over.qcow2');
    qemuCreate(over, 16 * MiB, { opts: 'cluster_size=1024', backing: back, backingFormat: 'raw' });
    qemuIo(over, [
      'write -P 0x5a 100k 4k',
      'write -z 2M 2k',
      'write -P 0x66 5119k 3k',
      'write -P 0x77 9M 1k',
      // zero clusters over the backing file's data, across L2 tables (128 KiB each here), one
      // of them allocated before (a preallocated zero cluster inside the run)
      'write -P 0x55 3500k 1k',
      'write -z 3M 1M',
      'write -z 4200k 1M',
    ]);
    compareChunked(over);
  });

  it('an extended-L2 overlay over a qcow2 backing file', () => {
    const back = path.join(tmp.dir, 'back.qcow2');
    qemuCreate(back, 8 * MiB, { opts: 'cluster_size=4096' });
    qemuIo(back, ['write -P 0x11 0 1M', 'write -P 0x22 3M 100k', `write -P 0x33 ${8 * MiB - 3000} 3000`]);
    const over = path.join(tmp.dir, 'over-ext.qcow2');
    qemuCreate(over, 12 * MiB, { opts: 'cluster_size=32768,extended_l2=on', backing: back });
    qemuIo(over, [
      'write -P 0x5a 1000 5000',
      'write -z 40k 2k',
      'write -P 0x66 3M 1k',
      'write -P 0x77 9M 33k',
    ]);
    compareChunked(over);
  });

  it('reads a run of unallocated clusters from the backing disk in one read', () => {
    const back = path.join(tmp.dir, 'count.raw');
    must('qemu-img', ['create', '-q', '-f', 'raw', back, String(4 * MiB)]);
    qemuIo(back, ['write -P 0x11 0 4M'], { format: 'raw' });
    const over = path.join(tmp.dir, 'count.qcow2');
    qemuCreate(over, 8 * MiB, { opts: 'cluster_size=1024', backing: back, backingFormat: 'raw' });
    qemuIo(over, ['write -P 0x5a 1M 2k']);
    const reads: Array<[number, number]> = [];
    class CountedRaw extends RawImage {
      override readInto(out: Uint8Array, offset: number): void {
        reads.push([offset, out.length]);
        super.readInto(out, offset);
      }
    }
    const backing = new CountedRaw(FileDevice.open(back, { readOnly: true, lock: false }));
    const img = Qcow2Image.openDevice(FileDevice.open(over, { readOnly: true, lock: false }), {
      readOnly: true,
      backing,
    });
    try {
      const out = img.read(0, 8 * MiB);
      expect(sameBytes(out, qemuRaw(over))).toBe('equal');
      // Two runs below the backing file's end (before and after the allocated 2 KiB), zeros past it.
      expect(reads).toEqual([
        [0, 1 * MiB],
        [1 * MiB + 2 * KiB, 3 * MiB - 2 * KiB],
      ]);
    } finally {
      img.close();
      backing.close();
    }
  });
});
