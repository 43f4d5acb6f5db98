/**
 * Cost proportional to what is allocated (issue 12): on a 2 TiB image qemu made with a few
 * allocated clusters, `qcow2 map`, `compare`, `convert` and `check` answer what qemu-img answers
 * (each would take hours walking every cluster). Timings are in scripts/bench-scale.ts, not here.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { must, run, tempDir, type TempDir } from '../support/qemu.ts';

let t: TempDir;
beforeAll(() => {
  t = tempDir('qcow2-scale');
});
afterAll(() => t.cleanup());

async function ours(...argv: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { out, err, code };
}

const TIB2 = 2 ** 41;

describe('a 2 TiB image with a few allocated clusters', () => {
  let img = '';
  let copy = '';
  beforeAll(() => {
    img = t.file('big.qcow2');
    copy = t.file('copy.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', img, '2T']);
    const writes = [
      'write -P 1 0 64k',
      'write -P 2 512M 4k',
      'write -P 3 1T 128k',
      'write -z 1536G 1M',
      'write -P 4 2047G 64k',
      `write -P 5 ${TIB2 - 65536} 64k`,
    ];
    must('qemu-io', [...writes.flatMap((c) => ['-c', c]), img]);
    must('qemu-img', ['convert', '-O', 'qcow2', img, copy]);
  });

  it('map (json and human) equals qemu-img map', async () => {
    for (const output of ['json', 'human']) {
      const mine = await ours('map', `--output=${output}`, img);
      expect(mine.code).toBe(0);
      expect(mine.out).toBe(must('qemu-img', ['map', `--output=${output}`, img]));
    }
  }, 60_000);

  it('compare: identical, and the first difference where qemu-img finds it', async () => {
    const same = await ours('compare', img, copy);
    expect(same.out).toBe('Images are identical.\n');
    expect(same.code).toBe(0);
    must('qemu-io', ['-c', 'write -P 9 1536G 512', copy]);
    const diff = await ours('compare', img, copy);
    const q = run('qemu-img', ['compare', img, copy]);
    expect(diff.out).toBe(q.stdout);
    expect(diff.code).toBe(q.status);
    expect(diff.code).toBe(1);
  }, 60_000);

  it('convert -O qcow2 copies what is there, as qemu-img convert does', async () => {
    const out = t.file('converted.qcow2');
    expect((await ours('convert', '-O', 'qcow2', img, out)).code).toBe(0);
    must('qemu-img', ['compare', img, out]);
    must('qemu-img', ['check', out]);
    expect(fs.statSync(out).size).toBeLessThan(16 << 20);
  }, 60_000);

  it('check', async () => {
    const mine = await ours('check', '--output=json', img);
    expect(mine.code).toBe(0);
    const theirs = JSON.parse(must('qemu-img', ['check', '--output=json', img])) as Record<string, unknown>;
    expect(JSON.parse(mine.out)).toEqual(theirs);
  }, 60_000);
});

describe('rebase (safe mode) as qemu-img rebase', () => {
  it('keeps what the guest sees, writing only where the backing files differ', async () => {
    const base1 = t.file('base1.qcow2');
    const base2 = t.file('base2.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base1, '64M']);
    must('qemu-img', ['create', '-q', '-f', 'qcow2', base2, '32M']);
    must('qemu-io', ['-c', 'write -P 1 0 1M', '-c', 'write -P 2 8M 64k', '-c', 'write -P 3 40M 128k', base1]);
    must('qemu-io', ['-c', 'write -P 1 0 1M', '-c', 'write -P 7 16M 64k', '-c', 'write -z 8M 64k', base2]);
    const tops = ['mine.qcow2', 'theirs.qcow2'].map((n) => t.file(n));
    for (const top of tops) {
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base1, '-F', 'qcow2', top]);
      must('qemu-io', ['-c', 'write -P 5 512k 64k', top]);
    }
    const before = t.file('before.raw');
    must('qemu-img', ['convert', '-O', 'raw', tops[0]!, before]);
    expect((await ours('rebase', '-b', base2, '-F', 'qcow2', tops[0]!)).code).toBe(0);
    must('qemu-img', ['rebase', '-b', base2, '-F', 'qcow2', tops[1]!]);
    must('qemu-img', ['compare', '-F', 'qcow2', before, tops[0]!]);
    // The same clusters allocated in the overlay (offsets aside).
    const alloc = (f: string) =>
      (JSON.parse(must('qemu-img', ['map', '--output=json', f])) as Array<Record<string, unknown>>)
        .filter((e) => e.depth === 0 && e.data === true)
        .map((e) => [e.start, e.length]);
    expect(alloc(tops[0]!)).toEqual(alloc(tops[1]!));
  }, 60_000);
});
