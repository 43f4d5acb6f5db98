/**
 * `qemu-img resize --preallocation=MODE` (iotests 125): the grown area's clusters are allocated
 * (metadata), and their space reserved (falloc) or written (full), so that writing there later
 * does not grow the image file. Ours (bin/qcow2.js as qemu-img) resizes; QEMU's own qemu-io
 * writes and qemu-img checks, and the same steps with the real qemu-img give the reference.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'resize-prealloc-'));
const ourImg = path.join(dir, 'qemu-img');
fs.symlinkSync(BIN, ourImg);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const CREATION = 2 * 1024 * 1024 - 48 * 1024;

function qemuImg(prog: string, args: string[]): { status: number; out: string } {
  const r = spawnSync(prog, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

/** Length and allocated bytes of the image file after each step. */
function steps(prog: string, img: string, mode: string, growthK: number): number[][] {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', img, String(CREATION)]);
  expect(
    qemuImg(prog, ['resize', '-f', 'qcow2', `--preallocation=${mode}`, img, `+${growthK}K`]).status,
  ).toBe(0);
  const sizes = (): number[] => {
    const st = fs.statSync(img);
    return [st.size, st.blocks * 512];
  };
  const afterResize = sizes();
  must('qemu-io', ['-c', `write 0 ${CREATION}`, img]);
  const afterOld = sizes();
  must('qemu-io', ['-c', `write -P 7 ${CREATION} ${growthK}K`, img]);
  must('qemu-io', ['-c', `read -P 7 ${CREATION} ${growthK}K`, img]);
  expect(must('qemu-img', ['check', img])).toContain('No errors were found on the image.');
  return [afterResize, afterOld, sizes()];
}

describe('qemu-img resize --preallocation (125)', () => {
  for (const mode of ['metadata', 'falloc', 'full']) {
    it(`${mode}: writing the grown area does not grow the file`, () => {
      for (const growth of [16, 80]) {
        const ours = steps(ourImg, path.join(dir, `o-${mode}-${growth}.qcow2`), mode, growth);
        const theirs = steps('qemu-img', path.join(dir, `q-${mode}-${growth}.qcow2`), mode, growth);
        // The file's length does not change with the write into the grown area; with falloc and
        // full neither do the blocks it holds.
        expect(ours[2]![0]).toBe(ours[1]![0]);
        if (mode !== 'metadata') expect(ours[2]![1]).toBeLessThanOrEqual(ours[1]![1]!);
        // In the end, as long as QEMU's.
        expect(ours[2]![0]).toBe(theirs[2]![0]);
      }
    });
  }

  it('falloc/full from inside a metadata-preallocated 64 KiB cluster reserve its grown part', () => {
    for (const mode of ['falloc', 'full']) {
      const f = path.join(dir, `head-${mode}.qcow2`);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', f, String(CREATION)]);
      expect(qemuImg(ourImg, ['resize', '-f', 'qcow2', `--preallocation=${mode}`, f, '+16K']).status).toBe(0);
      must('qemu-io', ['-c', `write 0 ${CREATION}`, f]);
      const before = fs.statSync(f).blocks;
      must('qemu-io', ['-c', `write ${CREATION} 16K`, f]);
      expect(fs.statSync(f).blocks).toBeLessThanOrEqual(before);
      expect(must('qemu-img', ['check', f])).toContain('No errors were found on the image.');
    }
  });

  it('over a backing file, the grown clusters are allocated and read zeros, as QEMU leaves them', () => {
    const out: Record<string, string[]> = {};
    for (const side of ['qemu', 'ours']) {
      const base = path.join(dir, `${side}-base.raw`);
      const f = path.join(dir, `${side}-over.qcow2`);
      must('qemu-img', ['create', '-q', '-f', 'raw', base, '128k']);
      must('qemu-io', ['-f', 'raw', '-c', 'write -q -P 1 0 128k', base]);
      out[side] = [];
      for (const [orig, dst, mode] of [
        ['31k', '96k', 'metadata'],
        ['33k', '128k', 'full'],
      ]) {
        must('qemu-img', [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-F',
          'raw',
          '-b',
          base,
          '-o',
          'cluster_size=64k',
          f,
          orig!,
        ]);
        const prog = side === 'qemu' ? 'qemu-img' : ourImg;
        expect(qemuImg(prog, ['resize', '-f', 'qcow2', `--preallocation=${mode}`, f, dst!]).status).toBe(0);
        must('qemu-io', ['-c', `read -q -P 1 0 ${orig}`, '-c', `read -q -P 0 ${orig} 63k`, f]);
        out[side].push(String(fs.statSync(f).size), must('qemu-img', ['map', '--output=json', f]));
      }
    }
    expect(out.ours).toEqual(out.qemu);
  });

  it('refuses a bad mode and a preallocated shrink with QEMU messages', () => {
    const img = path.join(dir, 'msg.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '1M']);
    for (const args of [
      ['resize', '--preallocation=bogus', img, '2M'],
      ['resize', '--shrink', '--preallocation=full', img, '512K'],
      ['resize', '--preallocation=metadata', img, '1M'],
    ])
      expect(qemuImg(ourImg, args)).toEqual(qemuImg('qemu-img', args));
  });
});
