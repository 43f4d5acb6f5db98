/**
 * The info-parity oracle (parity/engine-info-parity.ts): on a LUKS image QEMU wrote with two
 * snapshots (after a VM-state write) and two bitmaps (one disabled), the engine's
 * `imageInfo` says what `qemu-img info --output=json` says; a member that differs is named by
 * its path; the host-file members are not compared.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  QEMU_IMG,
  QEMU_IO,
  qemuImgCreate,
  qemuImgInfoJson,
  requireQemuTools,
  runTool,
} from '../qemu/qemu-img.ts';
import { plainLayout, qemuImageArgs, qemuObjectArgs } from '../layout.ts';
import { engineInfoDifference, infoDifference } from './engine-info-parity.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'info-parity-oracle-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function must(tool: string, args: string[]): Promise<void> {
  const r = await runTool(tool, args);
  expect(r.exitCode, r.stderr).toBe(0);
}

describe('engine info parity with qemu-img info', () => {
  it('agrees on an encrypted image with snapshots and bitmaps', async () => {
    await requireQemuTools();
    const layout = plainLayout({ clusterBits: 12, encrypt: 'luks', size: 4 << 20 });
    const file = path.join(dir, 'rich.qcow2');
    const obj = qemuObjectArgs(layout);
    const img = qemuImageArgs(layout, file);
    // (qemuImgCreate retries qemu-img's PBKDF2 timing flake on a busy machine)
    await qemuImgCreate(file, layout);
    await must(QEMU_IO, [
      ...obj,
      ...img.slice(0, -1),
      '-c',
      'write -P 1 0 64k',
      '-c',
      'write -b -P 2 0 8k',
      img.at(-1)!,
    ]);
    await must(QEMU_IMG, ['snapshot', ...obj, ...img.slice(0, -1), '-c', 's1', img.at(-1)!]);
    await must(QEMU_IMG, ['snapshot', ...obj, ...img.slice(0, -1), '-c', 's2', img.at(-1)!]);
    await must(QEMU_IMG, ['bitmap', ...obj, ...img.slice(0, -1), '--add', '-g', '65536', img.at(-1)!, 'b0']);
    await must(QEMU_IMG, ['bitmap', ...obj, ...img.slice(0, -1), '--add', '--disable', img.at(-1)!, 'b1']);
    const info = (await qemuImgInfoJson(file, layout)) as Record<string, unknown>;
    expect(JSON.stringify(info)).toMatch(/"vm-state-size"/);
    expect(JSON.stringify(info)).toMatch(/"bitmaps"/);
    expect(await engineInfoDifference(file, layout, info)).toBeUndefined();

    const doctored = structuredClone(info) as { snapshots: Array<Record<string, unknown>> };
    doctored.snapshots[1]!['vm-state-size'] = 4096;
    expect(await engineInfoDifference(file, layout, doctored)).toMatch(
      /^snapshots\.1\.vm-state-size: qemu-img 4096, qcow2 \d+$/,
    );
  });

  it('leaves out the host file and its naming', () => {
    expect(
      infoDifference({ filename: 'a', 'actual-size': 1, x: [1] }, { filename: 'b', x: [1] }),
    ).toBeUndefined();
    expect(infoDifference({ x: [1, 2] }, { x: [1] })).toBe('x.1: qemu-img undefined, qcow2 2');
  });
});
