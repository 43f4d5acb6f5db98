/**
 * Holes of sparse raw files (SEEK_DATA/SEEK_HOLE, src/io/holes.ts): `qcow2 map` of a raw file
 * and of a qcow2 image over a raw backing file says what `qemu-img map --output=json` says, and
 * convert leaves holes unallocated.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { must, tempDir, type TempDir } from '../support/qemu.ts';

let t: TempDir;
beforeAll(() => {
  t = tempDir('qcow2-holes');
});
afterAll(() => t.cleanup());

async function ours(...argv: string[]): Promise<string> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  if (code !== 0) throw new Error(`qcow2 ${argv.join(' ')} exited ${code}: ${err}`);
  return out;
}

/** A sparse raw file of `size` bytes with `writes` (qemu-io commands) written into it. */
function sparseRaw(name: string, size: number, writes: string[]): string {
  const f = t.file(name);
  fs.writeFileSync(f, '');
  fs.truncateSync(f, size);
  if (writes.length > 0) must('qemu-io', ['-f', 'raw', ...writes.flatMap((w) => ['-c', w]), f]);
  return f;
}

const layouts: Array<[string, string[]]> = [
  ['all hole', []],
  ['data at the start', ['write -P 1 0 4k']],
  ['data in the middle and near the end', ['write -P 1 1M 64k', 'write -P 2 3M 4k']],
  ['data at the very end', ['write -P 3 4092k 4k']],
  ['written zeros are data', ['write -P 0 128k 64k', 'write -P 7 2M 8k']],
];

describe('map of a sparse raw file', () => {
  for (const [name, writes] of layouts) {
    it(name, async () => {
      const f = sparseRaw(`${name.replace(/\W+/g, '-')}.raw`, 4 << 20, writes);
      const qemu = must('qemu-img', ['map', '-f', 'raw', '--output=json', f]);
      expect(await ours('map', '-f', 'raw', '--output=json', f)).toBe(qemu);
      expect(await ours('map', '-f', 'raw', f)).toBe(must('qemu-img', ['map', '-f', 'raw', f]));
    });
  }
});

describe('a raw backing file', () => {
  it('map of the overlay reports its holes as zero, no data', async () => {
    const base = sparseRaw('base.raw', 4 << 20, ['write -P 1 1M 64k', 'write -P 2 3M 4k']);
    const top = t.file('top.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', top]);
    must('qemu-io', ['-c', 'write -P 3 2M 64k', top]);
    expect(await ours('map', '--output=json', top)).toBe(must('qemu-img', ['map', '--output=json', top]));
  });
});

describe('convert of a sparse raw file', () => {
  it('allocates only the data, as qemu-img convert does', async () => {
    const src = sparseRaw('src.raw', 8 << 20, ['write -P 1 1M 64k', 'write -P 2 5M 128k']);
    const mine = t.file('mine.qcow2');
    const theirs = t.file('theirs.qcow2');
    await ours('convert', '-f', 'raw', '-O', 'qcow2', src, mine);
    must('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', src, theirs]);
    const strip = (s: string) => s.replace(/"offset": \d+/g, '');
    expect(strip(must('qemu-img', ['map', '--output=json', mine]))).toBe(
      strip(must('qemu-img', ['map', '--output=json', theirs])),
    );
    must('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', src, mine]);
  });
});
