/**
 * The recording covers what the run went through: the layout's bitmaps, added by qemu-img on the
 * closed image during set-up (outside the log), are in the starting image the crash states are
 * built on; the layout's tiny caches apply to the recorded opens. Before the re-base, every crash
 * state early in a sequence on a layout with a bitmap showed the bitmap's clusters with refcount 0
 * (`ERROR cluster 4 refcount=0 reference=1`), for QEMU and the engine alike.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireQemuTools } from '../qemu/qemu-img.ts';
import { plainLayout } from '../layout.ts';
import { judgeSequence, rerecord } from './crashtest.ts';
import { CheckServer } from './check-server.ts';
import { blklogwritesOptions, recordingImplementation } from './record.ts';

const BITMAPS_EXTENSION = Buffer.from([0x23, 0x85, 0x28, 0x75]);

const layout = plainLayout({
  cache: { l2CacheSize: 2 << 16, refcountCacheSize: 4 << 16 },
  bitmaps: [{ name: 'b0', granularityBits: 16, disabled: false }],
});

describe('recorded set-up', () => {
  it('passes the layout cache options to blklogwrites opens', () => {
    expect(blklogwritesOptions('i', 'l', layout)).toBe(
      `driver=qcow2,l2-cache-size=${2 << 16},refcount-cache-size=${4 << 16},file.driver=blklogwrites,file.file.filename=i,file.log.filename=l,file.log-append=on`,
    );
  });

  it.each(['engine', 'qemu-io'] as const)(
    '%s: the starting image has the layout bitmaps, and every crash state passes',
    async (implName) => {
      await requireQemuTools();
      const impl = recordingImplementation(implName);
      const run = await rerecord(impl, layout, ['write -P 0x01 0 65536', 'discard 0 65536']);
      expect(Buffer.from(run.recording.start).indexOf(BITMAPS_EXTENSION)).toBeGreaterThan(0);
      const server = new CheckServer();
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-crash-setup-'));
      try {
        const { judge, failures } = await judgeSequence(run, await impl.capabilities(), server, {
          budget: 500,
          seed: 1,
          all: true,
          scratchDir: scratch,
        });
        expect(failures.map((f) => f.failure.observed)).toEqual([]);
        expect(judge.stats.states).toBeGreaterThan(5);
      } finally {
        await server.stop();
        fs.rmSync(scratch, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
