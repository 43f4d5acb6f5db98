/**
 * Block status where QEMU's generic layer adds to what qcow2 says (bdrv_co_block_status), found by
 * the fuzz harness's map-parity oracle (properties/parity/engine-map-parity.ts):
 * - an unallocated subcluster of an allocated extended-L2 cluster past the end of a shorter
 *   backing file reads as zeros, and QEMU keeps qcow2's host offset for it, as without a backing
 *   file (corpus/engine-map-unallocated-subcluster-past-backing-end);
 * - a data cluster written only in part over a host-file hole (preallocation=metadata): QEMU asks
 *   the file, so the data extent stops where the file's data stops and the rest reads
 *   `"zero": true, "data": true`.
 * The engine's blockStatus runs, merged as `qcow2 map` merges them, must equal qemu-img map's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { Qcow2Image } from '../../src/image.ts';
import { RawImage } from '../../src/raw.ts';
import { FileDevice } from '../../src/io/device.ts';
import { engineMap, must, qemuMap, tempDir, type TempDir } from '../support/qemu.ts';

let t: TempDir;
beforeAll(() => {
  t = tempDir('qcow2-block-status-file-layer');
});
afterAll(() => t.cleanup());

function sameMap(file: string): void {
  const img = Qcow2Image.open(file, { readOnly: true, sync: false });
  try {
    expect(engineMap(img)).toEqual(qemuMap(file));
  } finally {
    img.close();
  }
}

describe('block status as qemu-img map reports it, file layer included', () => {
  it('an unallocated subcluster of an allocated cluster past the end of the backing file keeps its host offset', () => {
    const base = t.file('base.img');
    const top = t.file('top.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'raw', base, '6656']);
    must('qemu-io', ['-f', 'raw', '-c', 'write -P 145 0 1372', base]);
    const opts = 'compat=1.1,cluster_size=16384,extended_l2=on,backing_file=base.img,backing_fmt=raw';
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', opts, top, '130560']);
    // cluster 3 allocated from subcluster 18 on; subclusters 0-17 stay unallocated, past the base
    must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 58724 16384', '-c', 'write -z 0 16384', top]);
    expect(qemuMap(top).some((e) => !e.present && e.offset !== undefined)).toBe(true);
    sameMap(top);
  });

  it('a data cluster written in part over a host-file hole stops where the data stops', () => {
    const file = t.file('prealloc.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', file, '1M']);
    must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 3 4096 4096', '-c', 'write -P 4 200k 1k', file]);
    const q = qemuMap(file);
    expect(q.some((e) => e.data && e.zero)).toBe(true);
    expect(q.some((e) => e.data && !e.zero)).toBe(true);
    sameMap(file);
  });

  it('a data cluster written in part without preallocation is data throughout (no BDRV_BLOCK_RECURSE)', () => {
    const file = t.file('plain.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', file, '4M']);
    must('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 1M 4k', file]);
    const q = qemuMap(file);
    // the host file has a hole after the 4 KiB written (QEMU zeroes the rest of the cluster
    // efficiently); qemu-img map does not look: one data extent, no zero flag
    expect(q.filter((e) => e.data)).toEqual([
      expect.objectContaining({ start: 1 << 20, length: 65536, zero: false }),
    ]);
    sameMap(file);
  });

  it("a raw backing file's last partial sector is the backing's, a trailing hole past its end", () => {
    const base = t.file('odd.raw');
    const top = t.file('odd-top.qcow2');
    fs.writeFileSync(base, Buffer.alloc(1000001, 0x5a));
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top, '2M']);
    const q = qemuMap(top);
    expect(q.map((e) => [e.start, e.length, e.depth, e.zero])).toEqual([
      [0, 1000001, 1, false],
      [1000001, 447, 1, true],
      [1000448, (2 << 20) - 1000448, 0, true],
    ]);
    sameMap(top);
    const raw = new RawImage(FileDevice.open(base, { readOnly: true }));
    try {
      expect(raw.size).toBe(1000448);
      expect(raw.read(1000000, 448)).toEqual(new Uint8Array(448).fill(0x5a, 0, 1));
    } finally {
      raw.close();
    }
  });
});
