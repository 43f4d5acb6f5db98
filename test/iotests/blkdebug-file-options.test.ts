/**
 * qemu-io's `open -o driver=qcow2,file.align=4k blkdebug::IMG` (iotests 033, 268): the file name
 * names the file node that the `file.*` options configure (QEMU's bdrv_fill_options); ours
 * (bin/qcow2.js as qemu-io) and the real qemu-io print the same and leave the same data.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-file-opts-'));
const ourIo = path.join(dir, 'qemu-io');
fs.symlinkSync(BIN, ourIo);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function io(prog: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(prog, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, out: (r.stdout + r.stderr).replace(/^\d.*ops; .*$/gm, 'TIMING') };
}

describe('file.* options beside a blkdebug: file name', () => {
  it('open -o driver=qcow2,file.align=4k blkdebug::IMG writes as QEMU does', () => {
    const res: Record<string, unknown[]> = {};
    for (const side of ['qemu', 'ours']) {
      const img = path.join(dir, `${side}.qcow2`);
      must('qemu-img', ['create', '-f', 'qcow2', img, '1M']);
      const prog = side === 'qemu' ? 'qemu-io' : ourIo;
      const open = `open -o driver=qcow2,file.align=4k blkdebug::${img}`;
      res[side] = [
        io(prog, ['-c', open, '-c', 'write -P 0xa 0x200 0x400', '-c', 'write -z 0x400 0x20000']),
        io('qemu-io', ['-c', 'read -P 0xa 0x200 0x200', '-c', 'read -P 0 0x400 0x20000', img]),
        must('qemu-img', ['map', '--output=json', img]),
      ];
    }
    expect((res.ours![0] as { status: number }).status).toBe(0);
    expect(res.ours).toEqual(res.qemu);
  });
});
