/**
 * The map-parity oracle (parity/engine-map-parity.ts): on an image QEMU wrote over a qcow2 backing
 * file (data, zero, compressed, discarded and partly written clusters, a shorter base), the
 * engine's map agrees with qemu-img map (extended-L2 subclusters past the base's end included), as
 * it does over a raw base whose length is not whole sectors and with host-file holes inside data
 * clusters; the comparison is exact (a data extent's zero flag included), and a data extent the
 * engine would call a hole is named with the field that differs.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { QEMU_IMG, QEMU_IO, requireQemuTools, runTool } from '../qemu/qemu-img.ts';
import { plainLayout } from '../layout.ts';
import { engineMapDifference, mapDifference, type Extent } from './engine-map-parity.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'map-parity-oracle-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function must(tool: string, args: string[]): Promise<void> {
  const r = await runTool(tool, args);
  expect(r.exitCode, r.stderr).toBe(0);
}

const ext = (start: number, length: number, more: Partial<Extent>): Extent => ({
  start,
  length,
  depth: 0,
  present: true,
  zero: false,
  data: true,
  offset: undefined,
  ...more,
});

describe('engine map parity with qemu-img map', () => {
  it('agrees on an image QEMU wrote over a shorter qcow2 base', async () => {
    await requireQemuTools();
    const base = path.join(dir, 'base.qcow2');
    const top = path.join(dir, 'top.qcow2');
    await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', base, '3M']);
    await must(QEMU_IO, ['-f', 'qcow2', '-c', 'write -P 7 0 2M', '-c', 'write -z 1M 64k', base]);
    await must(QEMU_IMG, [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-o',
      'cluster_size=16384',
      '-b',
      base,
      '-F',
      'qcow2',
      top,
      '8M',
    ]);
    const io = ['write -P 1 4k 8k', 'write -c -P 2 64k 16k', 'write -z 128k 32k', 'discard 1M 32k'];
    io.push('write -P 3 2900k 300k', 'write -z -u 5M 16k', 'write -P 4 7M 1k');
    await must(QEMU_IO, ['-f', 'qcow2', ...io.flatMap((c) => ['-c', c]), top]);
    expect(await engineMapDifference(top, plainLayout({ clusterBits: 14, size: 8 << 20 }))).toBeUndefined();
    // extended L2 over a raw base shorter than one cluster: subclusters past its end, unallocated
    // in an allocated cluster, keep their host offset (corpus/engine-map-unallocated-subcluster-past-backing-end)
    const raw = path.join(dir, 'short.raw');
    const sub = path.join(dir, 'sub.qcow2');
    await must(QEMU_IMG, ['create', '-q', '-f', 'raw', raw, '6656']);
    const opts = 'cluster_size=16384,extended_l2=on,backing_file=short.raw,backing_fmt=raw';
    await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-o', opts, sub, '130560']);
    await must(QEMU_IO, ['-f', 'qcow2', '-c', 'write -P 7 58724 16384', '-c', 'write -z 0 16384', sub]);
    const extL2 = plainLayout({ clusterBits: 14, extendedL2: true, size: 130560 });
    expect(await engineMapDifference(sub, extL2)).toBeUndefined();
  });

  it('agrees exactly over a raw base of a partial last sector, with host-file holes', async () => {
    await requireQemuTools();
    const raw = path.join(dir, 'odd.raw');
    fs.writeFileSync(raw, Buffer.alloc(100001, 0x33));
    const top = path.join(dir, 'odd.qcow2');
    await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-b', raw, '-F', 'raw', top, '1M']);
    // partial writes: the host file keeps a hole in each cluster's rest
    await must(QEMU_IO, ['-f', 'qcow2', '-c', 'write -P 1 200k 4k', '-c', 'write -P 2 96k 1k', top]);
    expect(await engineMapDifference(top, plainLayout({ size: 1 << 20 }))).toBeUndefined();
    const pre = path.join(dir, 'prealloc.qcow2');
    await must(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', pre, '1M']);
    await must(QEMU_IO, ['-f', 'qcow2', '-c', 'write -P 3 4k 4k', pre]);
    expect(await engineMapDifference(pre, plainLayout({ size: 1 << 20 }))).toBeUndefined();
  });

  it('compares exactly, and names what differs', () => {
    // qemu-img map splitting a data cluster at a host-file hole (a metadata-preallocated image)
    const qemu = [ext(0, 4096, { offset: 0x50000 }), ext(4096, 61440, { zero: true, offset: 0x51000 })];
    expect(mapDifference([ext(0, 65536, { offset: 0x50000 })], qemu)).toBe(
      'length: extent 0: qemu-img map [0, +4096) depth 0 present data at host 0x50000, qcow2 map [0, +65536) depth 0 present data at host 0x50000',
    );
    expect(mapDifference([qemu[0]!, { ...qemu[1]!, zero: false }], qemu)).toBe(
      'zero: extent 1: qemu-img map [4096, +61440) depth 0 present zero data at host 0x51000, qcow2 map [4096, +61440) depth 0 present data at host 0x51000',
    );
    expect(mapDifference(qemu, qemu)).toBeUndefined();
    // the engine calling that cluster a hole read through to nothing
    const hole = [ext(0, 65536, { data: false, zero: true, present: false })];
    expect(mapDifference(hole, qemu)).toBe(
      'length: extent 0: qemu-img map [0, +4096) depth 0 present data at host 0x50000, qcow2 map [0, +65536) depth 0 zero',
    );
  });
});
