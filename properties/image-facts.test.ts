/**
 * The image-facts oracle (oracles/image-facts.ts) on images qemu-img made: a layout and the image
 * made from it agree; an amended image differs from the layout before the amend, in the amended
 * fact's words, and agrees with the layout after it; a dirty bit left set is reported.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { qemuImgAmend, qemuImgCreate, qemuImgInfo, requireQemuTools } from './qemu/qemu-img.ts';
import { imageFactMismatches } from './oracles/image-facts.ts';
import { amendLayoutChange } from './runner/vm-state-amend-steps.ts';
import { plainLayout } from './layout.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'image-facts-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const LAYOUT = plainLayout({
  clusterBits: 14,
  refcountBits: 4,
  extendedL2: true,
  lazyRefcounts: true,
});

describe('image facts: qemu-img info against the layout', () => {
  it('agrees on a fresh image, and follows an amend step by step', async () => {
    await requireQemuTools();
    const file = path.join(dir, 'a.qcow2');
    await qemuImgCreate(file, LAYOUT);
    expect(imageFactMismatches(LAYOUT, (await qemuImgInfo(file)).json)).toEqual([]);

    let layout = LAYOUT;
    for (const option of ['lazy_refcounts=off', 'refcount_bits=16']) {
      expect((await qemuImgAmend(file, option)).exitCode).toBe(0);
      const info = (await qemuImgInfo(file)).json;
      // Against the layout before this amend: the amended fact, named.
      const stale = imageFactMismatches(layout, info);
      expect(stale.length).toBe(1);
      expect(stale[0]).toMatch(
        option.startsWith('lazy') ? /^lazy-refcounts: expected true/ : /^refcount-bits: expected 4/,
      );
      layout = { ...layout, ...amendLayoutChange(option) };
      expect(imageFactMismatches(layout, info)).toEqual([]);
    }
  });

  it('reports a dirty bit left set on a closed image', async () => {
    const file = path.join(dir, 'b.qcow2');
    await qemuImgCreate(file, LAYOUT);
    // qcow2.txt: incompatible_features is the big-endian u64 at header offset 72; bit 0 is "dirty".
    const fd = fs.openSync(file, 'r+');
    const low = new Uint8Array(1);
    fs.readSync(fd, low, 0, 1, 79);
    fs.writeSync(fd, Uint8Array.of(low[0]! | 1), 0, 1, 79);
    fs.closeSync(fd);
    expect(imageFactMismatches(LAYOUT, (await qemuImgInfo(file)).json)).toEqual([
      'dirty-flag: expected false, qemu-img info says true',
    ]);
  });
});
