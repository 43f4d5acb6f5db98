/**
 * Block status's fast runs (src/engine/block-status.ts runContinues: data clusters one after
 * another in the file, zero clusters, zero subclusters of extended L2, extended from the L2 entry
 * alone) give exactly what the general path gives (one (sub)cluster at a time, merged by the same
 * contiguity rule), and what qemu-img map prints.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlockStatus } from '../../src/api.ts';
import { Qcow2Image } from '../../src/image.ts';
import { engineMap, must, qemuMap, tempDir, type TempDir } from '../support/qemu.ts';

let t: TempDir;
beforeAll(() => {
  t = tempDir('qcow2-block-status-runs');
});
afterAll(() => t.cleanup());

const same = (a: BlockStatus, b: BlockStatus, len: number): boolean =>
  a.depth === b.depth &&
  a.present === b.present &&
  a.zero === b.zero &&
  a.data === b.data &&
  a.compressed === b.compressed &&
  a.filename === b.filename &&
  (a.hostOffset === undefined ? b.hostOffset === undefined : b.hostOffset === a.hostOffset + len);

/** The runs asked one granule at a time (no run spans two calls), merged as blockStatus merges. */
function granuleRuns(img: Qcow2Image, granule: number): Array<[number, number, BlockStatus]> {
  const out: Array<[number, number, BlockStatus]> = [];
  for (let off = 0; off < img.size;) {
    const want = Math.min(granule - (off % granule), img.size - off);
    const s = img.blockStatus(off, want);
    const last = out.at(-1);
    if (last && last[0] + last[1] === off && same(last[2], s, last[1])) last[1] += s.length;
    else out.push([off, s.length, s]);
    off += s.length;
  }
  return out;
}

function wholeRuns(img: Qcow2Image): Array<[number, number, BlockStatus]> {
  const out: Array<[number, number, BlockStatus]> = [];
  for (let off = 0; off < img.size;) {
    const s = img.blockStatus(off, img.size - off);
    out.push([off, s.length, s]);
    off += s.length;
  }
  return out;
}

function check(file: string, granule: number): Array<[number, number, BlockStatus]> {
  const img = Qcow2Image.open(file, { readOnly: true, sync: false });
  try {
    const whole = wholeRuns(img);
    const key = (r: Array<[number, number, BlockStatus]>): unknown =>
      r.map(([o, l, s]) => [o, l, s.depth, s.present, s.zero, s.data, s.compressed, s.hostOffset]);
    expect(key(whole)).toEqual(key(granuleRuns(img, granule)));
    expect(engineMap(img)).toEqual(qemuMap(file));
    return whole;
  } finally {
    img.close();
  }
}

describe('block status runs extended from the L2 entries alone', () => {
  it('standard L2: contiguous data clusters, a break in the host order, zero clusters', () => {
    const file = t.file('standard.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', file, '1M']);
    // clusters 0-7 in host order, then 16-19 allocated before 8-15 (host order broken at 8 and 16)
    must('qemu-io', [
      '-f',
      'qcow2',
      '-c',
      'write -P 1 0 32k',
      '-c',
      'write -P 2 64k 16k',
      '-c',
      'write -P 3 32k 32k',
      '-c',
      'write -z 128k 64k',
      '-c',
      'write -P 4 1000 100',
      file,
    ]);
    const runs = check(file, 4096);
    // the fast path had something to extend: a data run and a zero run of several clusters
    expect(runs.some(([, l, s]) => s.data && l >= 4 * 4096)).toBe(true);
    expect(runs.some(([, l, s]) => s.zero && s.present && l >= 4 * 4096)).toBe(true);
  });

  it('extended L2: zero subclusters across clusters, partial clusters, data between', () => {
    const file = t.file('extended.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=16384,extended_l2=on', file, '1M']);
    must('qemu-io', [
      '-f',
      'qcow2',
      '-c',
      'write -z 1536 200k',
      '-c',
      'write -P 5 40k 1k',
      '-c',
      'write -z 300k 3584',
      file,
    ]);
    const runs = check(file, 512);
    expect(runs.some(([, l, s]) => s.zero && s.present && !s.data && l >= 2 * 16384)).toBe(true);
  });
});
