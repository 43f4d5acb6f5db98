/**
 * Images qemu writes read identically through the engine: for every layout of the matrix
 * (cluster sizes 512 .. 2M, refcount widths 1 .. 64, compat 0.10 and 1.1, zlib and zstd), a
 * qemu-io script of patterned, unaligned and cluster-crossing writes, zero writes with and without
 * unmap, discards, compressed writes and truncations; then the engine's `read(0, size)` must equal
 * `qemu-img convert -O raw`, and its blockStatus must give `qemu-img map`'s extents.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import {
  engineMap,
  layoutMatrix,
  layoutName,
  layoutSize,
  normalizeMap,
  qemuOpts,
  type Layout,
} from './model.ts';
import { qemuCheck, qemuCreate, qemuIo, qemuMap, qemuRaw, sameBytes, tempDir } from '../support/qemu.ts';

const tmp = tempDir('qemu-written');
afterAll(() => tmp.cleanup());

/** The qemu-io script, in units of the cluster size `cs`, for a disk of `size` bytes. */
function qemuScript(cs: number, size: number): { cmds: string[]; finalSize: number } {
  const grown = size + 3 * cs;
  const finalSize = size + cs + 512;
  const cmds = [
    `write -P 0xa1 0 ${3 * cs + 123}`, // cluster-crossing, unaligned end
    `write -P 0xb2 ${cs / 2 + 7} ${cs + 100}`, // unaligned start and end, crossing
    `write -P 0xc3 ${4 * cs} ${2 * cs}`,
    `write -z ${4 * cs + 256} 300`, // zeros inside an allocated cluster
    `write -z ${5 * cs} ${cs}`, // a whole allocated cluster becomes zeros (kept allocated)
    `write -P 0xd4 ${7 * cs} ${2 * cs}`,
    `write -z -u ${7 * cs} ${cs}`, // zeros, unmapped
    `write -z -u ${9 * cs} ${cs}`, // zeros over nothing
    `write -P 0xe5 ${10 * cs} ${3 * cs}`,
    `discard ${10 * cs + 512} ${2 * cs}`, // partial clusters keep their data
    `write -c -P 0xf6 ${14 * cs} ${2 * cs}`, // compressed
    `write -c -P 0x07 ${17 * cs} ${cs}`,
    `write -P 0x17 ${size - 1500} 1000`, // near the end
    `truncate ${grown}`,
    `write -P 0x28 ${size + 2 * cs + 10} 100`, // beyond the old end
    `truncate ${finalSize}`, // shrink, to a size that is not cluster aligned
  ];
  return { cmds, finalSize };
}

function compareWithQemu(file: string, expectedSize: number): void {
  compareReads(file, expectedSize);
  compareMaps(file);
}

function compareReads(file: string, expectedSize: number): void {
  const raw = qemuRaw(file);
  expect(raw.length).toBe(expectedSize);
  expect(raw.some((b) => b !== 0)).toBe(true);
  const img = Qcow2Image.open(file, { readOnly: true, sync: false });
  try {
    expect(img.size).toBe(expectedSize);
    expect(sameBytes(img.read(0, img.size), raw)).toBe('equal');
  } finally {
    img.close();
  }
}

function compareMaps(file: string): void {
  const img = Qcow2Image.open(file, { readOnly: true, sync: false });
  try {
    expect(engineMap(img)).toEqual(normalizeMap(qemuMap(file)));
  } finally {
    img.close();
  }
}

describe('images written by qemu-io read identically through the engine', () => {
  const made = new Map<string, { file: string; finalSize: number }>();
  /** The layout's image, made once by qemu-img + qemu-io and shared by the read and map tests. */
  function imageFor(l: Layout): { file: string; finalSize: number } {
    const key = layoutName(l);
    let m = made.get(key);
    if (!m) {
      const file = tmp.file(`${l.clusterSize}-${l.refcountBits}-${l.compat}-${l.compression}.qcow2`);
      const size = layoutSize(l);
      qemuCreate(file, size, { opts: qemuOpts(l) });
      const { cmds, finalSize } = qemuScript(l.clusterSize, size);
      qemuIo(file, cmds);
      expect(qemuCheck(file).status).toBe(0);
      m = { file, finalSize };
      made.set(key, m);
    }
    return m;
  }
  const cases = layoutMatrix().map((l) => [layoutName(l), l] as [string, Layout]);

  it.each(cases)('read(0, size) equals qemu-img convert: %s', (_name, l) => {
    const { file, finalSize } = imageFor(l);
    compareReads(file, finalSize);
  });

  it.each(cases)('blockStatus extents equal qemu-img map: %s', (_name, l) => {
    compareMaps(imageFor(l).file);
  });

  it('preallocation=metadata and =falloc images read as zeros with the same map', () => {
    for (const prealloc of ['metadata', 'falloc']) {
      const file = tmp.file(`prealloc-${prealloc}.qcow2`);
      qemuCreate(file, 4 * 1024 * 1024, { opts: `cluster_size=65536,preallocation=${prealloc}` });
      qemuIo(file, ['write -P 0x33 70000 5000']);
      compareWithQemu(file, 4 * 1024 * 1024);
    }
  });

  it('a compressed cluster qemu writes at the unaligned end of the disk reads back', () => {
    const file = tmp.file('compressed-tail.qcow2');
    const size = 65536 * 3 + 4096;
    qemuCreate(file, size, { opts: 'cluster_size=65536' });
    qemuIo(file, [`write -c -P 0x44 ${65536 * 3} 4096`, 'write -c -P 0x55 0 65536']);
    compareWithQemu(file, size);
  });
});
