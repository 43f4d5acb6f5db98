/**
 * The check-parity oracle (parity/engine-check-parity.ts): on an image QEMU wrote with snapshots,
 * compressed, zero and partly written clusters in small extended-L2 clusters with 4-bit refcounts,
 * the engine's checker prints what qemu-img check prints; a counter that differs is named in words;
 * a dirty qemu-img check is not compared (the check oracle reports that one).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  qemuImgCheck,
  qemuImgCreate,
  qemuImgSnapshot,
  requireQemuTools,
  runTool,
  QEMU_IO,
} from '../qemu/qemu-img.ts';
import { plainLayout } from '../layout.ts';
import { engineCheckDifferences } from './engine-check-parity.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-parity-oracle-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const LAYOUT = plainLayout({ clusterBits: 14, refcountBits: 4, extendedL2: true, size: 8 << 20 });

async function io(file: string, cmds: string[]): Promise<void> {
  const r = await runTool(QEMU_IO, ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file]);
  expect(r.exitCode, r.stderr).toBe(0);
}

describe('engine check parity with qemu-img check', () => {
  it('agrees on a rich image QEMU wrote, and names a counter that differs', async () => {
    await requireQemuTools();
    const file = path.join(dir, 'rich.qcow2');
    await qemuImgCreate(file, LAYOUT);
    await io(file, ['write -P 1 0 40k', 'write -c -P 2 64k 16k', 'write -z 128k 32k', 'write -P 3 1M 3k']);
    expect((await qemuImgSnapshot(file, 'create', 's1')).exitCode).toBe(0);
    await io(file, ['write -P 4 4k 8k', 'discard 64k 16k', 'write -c -P 5 2M 16k']);
    const qemu = await qemuImgCheck(file);
    expect(qemu.exitCode).toBe(0);
    // the image's counters are not all zero: the comparison has something to compare
    expect(qemu.json?.['allocated-clusters']).toBeGreaterThan(4);
    expect(qemu.json?.['fragmented-clusters']).toBeGreaterThan(0);
    expect(engineCheckDifferences(file, LAYOUT, qemu)).toEqual([]);

    const doctored = { ...qemu, json: { ...qemu.json, 'compressed-clusters': 99 } };
    expect(engineCheckDifferences(file, LAYOUT, doctored)).toEqual([
      `compressed-clusters: qemu-img check 99, qcow2 check ${String(qemu.json?.['compressed-clusters'])}`,
    ]);
    expect(engineCheckDifferences(file, LAYOUT, { ...doctored, exitCode: 3 })).toEqual([]);
  });
});
