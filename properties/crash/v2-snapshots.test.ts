/**
 * The engine's snapshot operations on v2 images (no dirty bit) go through shadow copies switched
 * by one header-sector write (src/engine/shadow-switch.ts): every crash state of a create / write /
 * apply / delete sequence passes qemu-img check and the data oracle — with default and with tiny
 * metadata caches (write-back by eviction), and with a compressed cluster shared by the snapshot.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ImageLayout } from '../layout.ts';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { CheckServer } from './check-server.ts';
import { judgeSequence, rerecord } from './crashtest.ts';
import { recordingImplementation } from './record.ts';

const V2: ImageLayout = {
  compat: '0.10',
  clusterBits: 16,
  refcountBits: 16,
  extendedL2: false,
  compressionType: 'zlib',
  lazyRefcounts: false,
  size: 1 << 22,
};

const CASES: [string, ImageLayout, string[]][] = [
  [
    'create, write, apply, delete',
    V2,
    [
      'write -P 0x01 0 1024',
      'write -P 0x02 2097152 65536',
      'snapshot -c s1',
      'write -P 0x03 0 65536',
      'snapshot -a s1',
      'snapshot -d s1',
    ],
  ],
  [
    'tiny caches, 4k clusters, compressed data, two snapshots',
    { ...V2, clusterBits: 12, size: 1 << 21, cache: { l2CacheSize: 8192, refcountCacheSize: 8192 } },
    [
      'write -P 0x01 0 1024',
      'write -c -P 0x04 1048576 4096',
      'snapshot -c s1',
      'write -P 0x03 0 8192',
      'snapshot -c s2',
      'snapshot -a s1',
      'snapshot -d s2',
    ],
  ],
];

describe('engine v2 snapshots: crash states', () => {
  it.each(CASES)(
    '%s: no failing crash state',
    async (_name, layout, steps) => {
      await requireQemuTools();
      const impl = recordingImplementation('engine');
      const run = await rerecord(impl, layout, steps);
      const server = new CheckServer();
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-v2-snap-'));
      try {
        const { judge, failures } = await judgeSequence(run, await impl.capabilities(), server, {
          budget: 2000,
          seed: 1,
          all: true,
          scratchDir: scratch,
        });
        expect(failures.map((f) => f.failure)).toEqual([]);
        expect(judge.stats.states).toBeGreaterThan(50);
      } finally {
        await server.stop();
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
