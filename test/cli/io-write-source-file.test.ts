/**
 * `qcow2 io -c 'write -s FILE off len'` against qemu-io 7.2 (qemu missing = failure). Regression:
 * the engine's io accepted `-s` and ignored it, writing qemu-io's default 0xcd pattern instead of
 * the file, so every case script's stamped write (corpus/engine-stamped-write-source-file.sh, found
 * as "fuzz --seed 1" lost-data report) read back 0xcd/backing bytes where the stamp was expected.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';

let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-write-s-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const f = (name: string): string => path.join(dir, name);

interface Run {
  out: string;
  err: string;
  code: number;
}

async function ours(...argv: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { out, err, code };
}

function qemu(tool: 'qemu-img' | 'qemu-io', ...argv: string[]): Run {
  const r = spawnSync(tool, argv, { encoding: 'utf8' });
  if (r.error) throw r.error; // qemu missing: a failure, never a skip
  return { out: r.stdout, err: r.stderr, code: r.status ?? -1 };
}

const noTiming = (s: string): string[] => s.split('\n').filter((l) => !/ops; .* sec/.test(l));

/** The guest bytes of IMG, through qemu-img convert (independent of our reader). */
function guestBytes(img: string): Buffer {
  const raw = `${img}.raw`;
  const r = qemu('qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', img, raw);
  expect(r.code, r.err).toBe(0);
  return fs.readFileSync(raw);
}

/** A backing file of 0x02 under a 256 KiB-cluster, refcount_bits=1 overlay: the case's layout. */
function overlay(name: string): string {
  const base = f(`${name}-base.qcow2`);
  const img = f(`${name}.qcow2`);
  qemu('qemu-img', 'create', '-q', '-f', 'qcow2', base, '4M');
  qemu('qemu-io', '-f', 'qcow2', '-c', 'write -q -P 2 0 4M', base);
  const r = qemu(
    'qemu-img',
    'create',
    '-q',
    '-f',
    'qcow2',
    '-o',
    `cluster_size=256k,refcount_bits=1,backing_file=${base},backing_fmt=qcow2`,
    img,
    '4M',
  );
  expect(r.code, r.err).toBe(0);
  return img;
}

describe('write -s FILE (source file) against qemu-io', () => {
  it('writes the file (repeated when shorter, cut when longer) where qemu-io does', async () => {
    // a 256 KiB stamp at an unaligned offset over two clusters of a backing-backed overlay
    // (copy-on-write of both partial clusters), plus a short file repeated and a long one cut
    const stamp = f('stamp.bin');
    fs.writeFileSync(stamp, Buffer.from(Array.from({ length: 262144 }, (_, i) => (i * 7 + (i >> 9)) & 0xff)));
    fs.writeFileSync(f('abc.bin'), 'abc');
    const cmds = [
      `write -s ${stamp} 2357662 262144`,
      `write -s ${f('abc.bin')} 1000 10`,
      `write -s ${stamp} 70000 100`,
      `read -v 995 20`,
    ].flatMap((c) => ['-c', c]);
    const a = overlay('ours');
    const b = overlay('qemu');
    const r = await ours('io', ...cmds, a);
    const q = qemu('qemu-io', ...cmds, b);
    expect(r.code).toBe(q.code);
    expect(r.code).toBe(0);
    expect(noTiming(r.out)).toEqual(noTiming(q.out));
    const mine = guestBytes(a);
    expect(mine.equals(guestBytes(b))).toBe(true);
    // and the stamp really is there (not qemu-io's default 0xcd, not the backing file's 0x02)
    expect(mine.subarray(2357662, 2357662 + 262144).equals(fs.readFileSync(stamp))).toBe(true);
    expect(mine.subarray(1000, 1010).toString('latin1')).toBe('abcabcabca');
    expect(qemu('qemu-img', 'check', a).code).toBe(0);
  });

  it('a missing or empty file fails the command with qemu-io stderr line and exit code', async () => {
    fs.writeFileSync(f('empty.bin'), '');
    const cmds = [
      `write -s ${f('nosuch.bin')} 0 512`,
      `write -s ${f('empty.bin')} 512 512`,
      'read -P 0 0 1024',
    ].flatMap((c) => ['-c', c]);
    const a = f('e-ours.qcow2');
    const b = f('e-qemu.qcow2');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', a, '1M');
    qemu('qemu-img', 'create', '-q', '-f', 'qcow2', b, '1M');
    const r = await ours('io', ...cmds, a);
    const q = qemu('qemu-io', ...cmds, b);
    expect(r.code).toBe(q.code);
    expect(r.code).toBe(1);
    expect(noTiming(r.out)).toEqual(noTiming(q.out));
    expect(r.err.trim().split('\n')).toEqual(q.err.trim().split('\n'));
  });
});
