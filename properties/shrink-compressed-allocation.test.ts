/**
 * The model's "may hold a host cluster" hint after a compressed cluster is cut by a shrink (found
 * by an engine campaign, seed 319847921: a qemu-io turn's `write -c` got EIO). QEMU 7.2 keeps a
 * cluster cut inside as it is (still compressed); the engine zeroes the cut tail by rewriting it as
 * a normal cluster. A zero write without unmap then frees a compressed cluster (zero_in_l2_slice)
 * but keeps a normal one's host cluster (zero flag with an offset), and QEMU refuses to compress
 * into any entry with a host offset (qcow2_alloc_compressed_cluster_offset: EIO). The model cannot
 * tell who shrank, so it must never call a cluster free that QEMU refuses (the harness would
 * generate a failing write) and must match QEMU exactly where the engine shrank.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../src/image.ts';
import { qemuCreate, qemuIo, run, tempDir } from '../test/support/qemu.ts';
import { DiskModel, NO_QUIRKS } from './model/disk-model.ts';
import type { ImageLayout } from './layout.ts';

const tmp = tempDir('shrink-compressed-allocation');
afterAll(() => tmp.cleanup());

const CS = 64 << 10;
const SIZE = 2 * CS;

const cases = [
  { name: 'shrink inside the cluster, engine', by: 'engine', shrunk: CS + 2560 },
  { name: 'shrink inside the cluster, qemu-io', by: 'qemu-io', shrunk: CS + 2560 },
  { name: 'cluster-aligned shrink, engine', by: 'engine', shrunk: CS },
  { name: 'cluster-aligned shrink, qemu-io', by: 'qemu-io', shrunk: CS },
] as const;

describe('a compressed cluster cut by a shrink, then zeroed: which clusters QEMU refuses to compress into', () => {
  for (const c of cases) {
    it(c.name, () => {
      const img = tmp.file(`${c.by}-${c.shrunk}.qcow2`);
      fs.rmSync(img, { force: true });
      qemuCreate(img, SIZE, { opts: `compat=1.1,cluster_size=${CS}` });
      // the last cluster compressed (engine or QEMU alike), then cut, then zeroed without unmap
      qemuIo(img, [`write -c -P 3 0 ${CS}`, `write -c -P 4 ${CS} ${CS}`]);
      const lastStart = Math.floor((c.shrunk - 1) / CS) * CS;
      if (c.by === 'engine') {
        const e = Qcow2Image.open(img, { sync: false });
        e.resize(c.shrunk, { shrink: true });
        e.writeZeroes(lastStart, c.shrunk - lastStart);
        e.close();
      } else qemuIo(img, [`truncate ${c.shrunk}`, `write -z ${lastStart} ${c.shrunk - lastStart}`]);

      const layout: ImageLayout = {
        compat: '1.1',
        clusterBits: 16,
        refcountBits: 16,
        extendedL2: false,
        compressionType: 'zlib',
        lazyRefcounts: false,
        size: SIZE,
      };
      const model = new DiskModel(layout, NO_QUIRKS);
      model.writeCompressed({ kind: 'write-compressed', offset: 0, length: CS, pattern: 3 });
      model.writeCompressed({ kind: 'write-compressed', offset: CS, length: CS, pattern: 4 });
      model.resize(c.shrunk);
      model.writeZeroes(lastStart, c.shrunk - lastStart, false);

      const copy = tmp.file('try.qcow2');
      fs.copyFileSync(img, copy);
      const r = run('qemu-io', [
        '-f',
        'qcow2',
        '-c',
        `write -c -P 7 ${lastStart} ${c.shrunk - lastStart}`,
        copy,
      ]);
      const accepted = r.status === 0 && !`${r.stdout}${r.stderr}`.includes('failed');
      const legal = model.compressedWriteLegal(lastStart, c.shrunk - lastStart);
      // never a compressed write QEMU refuses
      if (legal) expect(accepted).toBe(true);
      // exact where the engine shrank (QEMU refuses: the engine's cut cluster is a normal one) and
      // where the shrink is aligned (the last cluster stays compressed and the zero write frees it)
      if (c.by === 'engine' || c.shrunk % CS === 0) expect(legal).toBe(accepted);
      if (c.by === 'engine' && c.shrunk % CS !== 0) expect(accepted).toBe(false);
    });
  }
});
