/**
 * The model's "may hold a host cluster" hint after growing over a longer backing file (found by a
 * mixed engine/qemu-io campaign: a qemu-io turn's `write -c` got EIO on a v2 image). The grown
 * area is zero-filled so the backing file does not show through, and that allocates: the cluster
 * holding the old end when it is not (sub)cluster-aligned (explicit zeros, copy-on-write), and on
 * v2, which has no zero clusters, every cluster the engine fills with zeros (zero flags and
 * subcluster zero bits hold no host cluster). QEMU 7.2 refuses a compressed write into any cluster
 * with a host cluster (EIO) and accepts it everywhere else: the model
 * must say exactly that, cluster by cluster, or the harness generates writes QEMU refuses.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../src/image.ts';
import { qemuCreate, qemuIo, run, tempDir } from '../test/support/qemu.ts';
import { DiskModel, NO_QUIRKS } from './model/disk-model.ts';
import type { ImageLayout } from './layout.ts';

const tmp = tempDir('grow-allocation');
afterAll(() => tmp.cleanup());

const CS = 64 << 10;
const SIZE = 4 * CS;
const BASE_SIZE = 8 * CS;
/** Inside cluster 0, subcluster-aligned (2 KiB subclusters with extended L2). */
const SHRUNK = 18432;

/** Inside cluster 0, inside a 2 KiB subcluster. */
const SHRUNK_MID_SUBCLUSTER = 18944;

const cases = [
  { name: 'v2, engine', compat: '0.10', extendedL2: false, by: 'engine', shrunk: SHRUNK },
  { name: 'v3, engine', compat: '1.1', extendedL2: false, by: 'engine', shrunk: SHRUNK },
  { name: 'v3, qemu-io', compat: '1.1', extendedL2: false, by: 'qemu-io', shrunk: SHRUNK },
  { name: 'v3 extended L2, engine', compat: '1.1', extendedL2: true, by: 'engine', shrunk: SHRUNK },
  { name: 'v3 extended L2, qemu-io', compat: '1.1', extendedL2: true, by: 'qemu-io', shrunk: SHRUNK },
  {
    name: 'v3 extended L2 mid-subcluster, engine',
    compat: '1.1',
    extendedL2: true,
    by: 'engine',
    shrunk: SHRUNK_MID_SUBCLUSTER,
  },
  {
    name: 'v3 extended L2 mid-subcluster, qemu-io',
    compat: '1.1',
    extendedL2: true,
    by: 'qemu-io',
    shrunk: SHRUNK_MID_SUBCLUSTER,
  },
] as const;

describe('growing over a longer backing file: which clusters QEMU refuses to compress into', () => {
  const base = tmp.file('base.img');
  qemuCreate(base, BASE_SIZE);
  qemuIo(base, [`write -P 0x5a 0 ${BASE_SIZE}`]);

  for (const c of cases) {
    it(c.name, () => {
      const img = tmp.file(`${c.by}-${c.compat}-${String(c.extendedL2)}-${c.shrunk}.qcow2`);
      const opts = `compat=${c.compat},cluster_size=${CS}${c.extendedL2 ? ',extended_l2=on' : ''}`;
      qemuCreate(img, SIZE, { opts, backing: base });
      if (c.by === 'engine') {
        const e = Qcow2Image.open(img, { sync: false });
        e.resize(c.shrunk, { shrink: true });
        e.resize(SIZE);
        e.close();
      } else qemuIo(img, [`truncate ${c.shrunk}`, `truncate ${SIZE}`]);

      const layout: ImageLayout = {
        compat: c.compat,
        clusterBits: 16,
        refcountBits: 16,
        extendedL2: c.extendedL2,
        compressionType: 'zlib',
        lazyRefcounts: false,
        size: SIZE,
        backing: {
          format: 'qcow2',
          size: BASE_SIZE,
          writes: [{ offset: 0, length: BASE_SIZE, pattern: 0x5a }],
        },
      };
      const model = new DiskModel(layout, NO_QUIRKS);
      model.resize(c.shrunk);
      model.resize(SIZE);

      const accepted: boolean[] = [];
      const legal: boolean[] = [];
      for (let k = 0; k < SIZE / CS; k++) {
        const copy = tmp.file('try.qcow2');
        fs.copyFileSync(img, copy);
        const r = run('qemu-io', ['-f', 'qcow2', '-c', `write -c -P 7 ${k * CS} ${CS}`, copy]);
        accepted.push(r.status === 0 && !`${r.stdout}${r.stderr}`.includes('failed'));
        legal.push(model.compressedWriteLegal(k * CS, CS));
      }
      // QEMU refuses the head cluster wherever it wrote explicit zeros there (not vacuous)
      if (!c.extendedL2 || c.shrunk % 2048 !== 0) expect(accepted[0]).toBe(false);
      expect(legal).toEqual(accepted);
    });
  }
});
