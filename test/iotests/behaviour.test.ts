/**
 * Regressions found by QEMU's qemu-iotests (issue 14), each checked against the real qemu-img /
 * qemu-io on the same input: our CLI is run as `qemu-img`/`qemu-io` (bin/qcow2.js under those
 * names), so the outputs must match QEMU's to the letter, timings aside.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must, run } from '../support/qemu.ts';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-behaviour-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Ours, as the named tool. */
function ours(
  tool: 'qemu-img' | 'qemu-io',
  args: string[],
): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(path.join(tools, tool), args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** qemu-io's timing line varies run to run. */
function untimed(s: string): string {
  return s.replace(/^\d.*ops; .*$/gm, 'TIMING');
}

function img(name: string): string {
  return path.join(dir, name);
}

describe('qemu-io -s (052): writes go to a temporary overlay', () => {
  it('leaves the image unchanged and reads its own writes back', () => {
    const f = img('s.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '1M']);
    must('qemu-io', ['-c', 'write -P 0x11 0 64k', f]);
    const before = fs.readFileSync(f);
    const cmds = ['-c', 'write -P 0x22 0 4k', '-c', 'read -P 0x22 0 4k', '-c', 'read -P 0x11 4k 4k'];
    const q = run('qemu-io', ['-s', ...cmds, f]);
    const o = ours('qemu-io', ['-s', ...cmds, f]);
    expect(untimed(o.stdout)).toBe(untimed(q.stdout));
    expect(o.status).toBe(q.status);
    expect(fs.readFileSync(f).equals(before)).toBe(true);
    expect(must('qemu-io', ['-c', 'read -P 0x11 0 64k', f])).toContain('read 65536/65536');
  });
});

describe('qemu-io -C (197/215): copy-on-read fills the top image', () => {
  it('allocates what it read through, as QEMU does', () => {
    const base = img('cor-base.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
    must('qemu-io', ['-c', 'write -P 0x55 1M 64k', base]);
    const maps: string[] = [];
    for (const [who, name] of [
      ['qemu', 'cor-q.qcow2'],
      ['ours', 'cor-o.qcow2'],
    ] as const) {
      const top = img(name);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
      const args = [
        '-f',
        'qcow2',
        '-C',
        '-c',
        'read -P 0x55 1M 4k',
        '-c',
        'read 0 1k',
        '-c',
        'read 3M 512',
        top,
      ];
      const r = who === 'qemu' ? run('qemu-io', args) : ours('qemu-io', args);
      expect(r.status).toBe(0);
      maps.push(must('qemu-io', ['-f', 'qcow2', '-c', 'map', top]));
      expect(must('qemu-img', ['check', top])).toContain('No errors were found');
    }
    expect(maps[1]).toBe(maps[0]);
    const q = run('qemu-io', ['-f', 'qcow2', '-C', '-r', img('cor-q.qcow2')]);
    const o = ours('qemu-io', ['-f', 'qcow2', '-C', '-r', img('cor-q.qcow2')]);
    expect(o.stderr.replace(/cor-q/g, 'X')).toBe(q.stderr.replace(/cor-q/g, 'X'));
  });
});

describe('64-bit sizes (054)', () => {
  it('prints 2^60 exactly and refuses it with qemu-img text', () => {
    const args = (f: string): string[] => ['create', '-f', 'qcow2', f, `${1024 * 1024}T`];
    const q = run('qemu-img', args(img('big.qcow2')));
    const o = ours('qemu-img', args(img('big.qcow2')));
    expect(o.stdout).toBe(q.stdout);
    expect(o.stdout).toContain('size=1152921504606846976');
    expect(o.stderr).toBe(q.stderr);
    expect(o.status).toBe(q.status);
  });
});

describe('messages as QEMU prints them', () => {
  it('names a missing backing file as QEMU does (069)', () => {
    const f = img('nobacking.qcow2');
    must('qemu-img', ['create', '-q', '-u', '-f', 'qcow2', '-b', img('gone.qcow2'), '-F', 'qcow2', f, '1M']);
    const q = run('qemu-io', ['-c', 'read 0 512', f]);
    const o = ours('qemu-io', ['-c', 'read 0 512', f]);
    expect(o.stderr).toBe(q.stderr);
    expect(o.status).toBe(q.status);
  });

  it('refuses convert -B without a backing format (114)', () => {
    const src = img('conv-src.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '1M']);
    const args = (d: string): string[] => ['convert', '-O', 'qcow2', '-B', src, src, d];
    const q = run('qemu-img', args(img('conv-q.qcow2')));
    const o = ours('qemu-img', args(img('conv-o.qcow2')));
    expect(o.stderr).toBe(q.stderr);
    expect(o.status).toBe(q.status);
  });
});

describe('convert -B (019): data from the backing chain stays unallocated', () => {
  it('maps as QEMU maps it', () => {
    const base = img('cb-base.qcow2');
    const src = img('cb-src.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M']);
    must('qemu-io', ['-c', 'write -P 5 0 1M', base]);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', src]);
    must('qemu-io', ['-c', 'write -P 6 64k 64k', '-c', 'write -z 128k 64k', src]);
    const args = (d: string): string[] => ['convert', '-O', 'qcow2', '-B', base, '-F', 'qcow2', src, d];
    must('qemu-img', args(img('cb-q.qcow2')));
    expect(ours('qemu-img', args(img('cb-o.qcow2'))).status).toBe(0);
    const map = (f: string): string => must('qemu-io', ['-c', 'map', f]);
    expect(map(img('cb-o.qcow2'))).toBe(map(img('cb-q.qcow2')));
    expect(must('qemu-img', ['compare', src, img('cb-o.qcow2')])).toContain('Images are identical');
  });
});
