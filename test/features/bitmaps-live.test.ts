/**
 * Persistent dirty bitmaps kept alive by the engine, as QEMU 7.2 keeps them (docs/bitmaps.md):
 * the bits are read back by QEMU itself (qemu-nbd -B + qemu-img map x-dirty-bitmap), every image
 * must pass `qemu-img check`, and `qcow2 bitmap` / `info` / `convert --bitmaps` run side by side
 * with qemu-img.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../src/open.ts';
import { Qcow2Image } from '../../src/image.ts';
import { readDirtyBits } from '../../properties/qemu/qemu-bitmaps.ts';
import { cli, must, qemuCheck, qemuIo, run, tempDir, type TempDir } from '../support/qemu.ts';

const M = 1 << 20;
const K = 1024;

async function bits(file: string, name: string): Promise<string> {
  const r = await readDirtyBits(file, name);
  if (!r.ok) return `unreadable: ${r.error}`;
  return r.ranges.map((x) => `${x.offset}+${x.length}`).join(' ');
}

function infoBitmaps(file: string): unknown {
  const info = JSON.parse(must('qemu-img', ['info', '--output=json', file])) as {
    'format-specific'?: { data?: { bitmaps?: unknown } };
  };
  return info['format-specific']?.data?.bitmaps;
}

/** Offset of the bitmaps extension's data in a header (type 0x23852875). */
function findBitmapsExt(d: Buffer): number {
  let o = d.readUInt32BE(100); // header_length
  for (;;) {
    const type = d.readUInt32BE(o);
    const len = d.readUInt32BE(o + 4);
    if (type === 0x23852875) return o + 8;
    if (type === 0) throw new Error('no bitmaps extension');
    o += 8 + Math.ceil(len / 8) * 8;
  }
}

function flagsOf(file: string): number[] {
  // the in_use flag as it is on disk, without opening through QEMU (which would change it)
  // -U: the 'crashed' writer of a test may still hold the image in this process
  const img = openImage(file, { readOnly: true, forceShare: true }) as Qcow2Image;
  try {
    return (img.listBitmaps().bitmaps ?? []).map((b) => (b.flags.includes('in-use') ? 1 : 0));
  } finally {
    img.close();
  }
}

describe('persistent bitmaps kept by the engine', () => {
  let t: TempDir;
  beforeAll(() => {
    t = tempDir('qcow2-bitmaps-live-');
  });
  afterAll(() => t.cleanup());

  it("the issue's recipe: qcow2 io write → check clean, b0 holds exactly [1M, +64k)", async () => {
    const f = t.file('bm.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
    must('qemu-img', ['bitmap', '--add', f, 'b0']);
    const r = await cli(['io', '-c', 'write -P 2 1M 64k', f]);
    expect(r.code, r.err).toBe(0);
    const check = run('qemu-img', ['check', f]);
    expect(check.status, check.stderr + check.stdout).toBe(0);
    expect(check.stderr).not.toMatch(/inconsistent/);
    expect(await bits(f, 'b0')).toBe(`${M}+${64 * K}`);
  }, 60_000);

  it('qemu-io and the engine take turns: every write of either lands in the enabled bitmaps', async () => {
    const f = t.file('turns.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
    must('qemu-img', ['bitmap', '--add', '-g', '4096', f, 'fine']);
    must('qemu-img', ['bitmap', '--add', f, 'coarse']);
    must('qemu-img', ['bitmap', '--add', '--disable', f, 'off']);
    qemuIo(f, ['write -P 1 0 512']);
    expect((await cli(['io', '-c', 'write -z 3M 5000', '-c', 'discard 10M 100', f])).code).toBe(0);
    qemuIo(f, ['write -P 3 20M 64k']);
    expect((await cli(['io', '-c', 'write -c -P 4 30M 64k', '-c', 'write -P 5 3000000 10', f])).code).toBe(0);
    expect(qemuCheck(f).status).toBe(0);
    expect(await bits(f, 'fine')).toBe(
      [
        `0+${4 * K}`,
        `${2998272}+${4 * K}`,
        `${3 * M}+${8 * K}`,
        `${10 * M}+${4 * K}`,
        `${20 * M}+${64 * K}`,
        `${30 * M}+${64 * K}`,
      ].join(' '),
    );
    expect(await bits(f, 'coarse')).toBe(
      [
        `0+${64 * K}`,
        `${2949120}+${64 * K}`,
        `${3 * M}+${64 * K}`,
        `${10 * M}+${64 * K}`,
        `${20 * M}+${64 * K}`,
        `${30 * M}+${64 * K}`,
      ].join(' '),
    );
    expect(await bits(f, 'off')).toBe('');
  }, 120_000);

  it('in_use on a read-write open; a bitmap left in use by a crash stays inconsistent, untouched', async () => {
    const f = t.file('crash.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
    must('qemu-img', ['bitmap', '--add', f, 'b0']);
    const img = Qcow2Image.open(f, { sync: false });
    expect(flagsOf(f)).toEqual([1]); // set at the open, before any write (QEMU does the same)
    img.close();
    expect(flagsOf(f)).toEqual([0]);
    // qemu-io crashes with the bitmap in use
    run('qemu-io', ['-c', 'write 0 512', '-c', 'sigraise 9', f]);
    expect(flagsOf(f)).toEqual([1]);
    expect((await cli(['io', '-c', 'write -P 7 1M 4k', f])).code).toBe(0);
    expect(flagsOf(f)).toEqual([1]);
    expect(qemuCheck(f).status).toBe(0);
    expect(await bits(f, 'b0')).toMatch(/inconsistent/);
    const clear = await cli(['bitmap', '--clear', f, 'b0']);
    expect(clear.code).toBe(1);
    expect(clear.err).toContain(
      "Operation clear on bitmap b0 failed: Bitmap 'b0' is inconsistent and cannot be used",
    );
    expect((await cli(['bitmap', '--remove', f, 'b0'])).code).toBe(0);
    expect(infoBitmaps(f)).toBeUndefined();
    expect(qemuCheck(f).status).toBe(0);
  }, 60_000);

  it('qcow2 bitmap agrees with qemu-img bitmap, operation by operation', async () => {
    const a = t.file('ops-qemu.qcow2');
    const b = t.file('ops-engine.qcow2');
    for (const f of [a, b]) {
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', f, '16M']);
      qemuIo(f, ['write -P 1 0 4k']);
    }
    const steps: string[][] = [
      ['--add', '-g', '512'],
      ['--add', '--disable'],
      ['--add', '-g', '1M'],
      ['--enable'],
      ['--disable'],
      ['--clear'],
      ['--remove'],
    ];
    const names = ['x', 'y', 'z', 'y', 'z', 'x', 'z'];
    for (let i = 0; i < steps.length; i++) {
      must('qemu-img', ['bitmap', ...steps[i], a, names[i]]);
      const r = await cli(['bitmap', ...steps[i], b, names[i]]);
      expect(r.code, r.err).toBe(0);
      qemuIo(a, [`write -P ${i + 2} ${i * 2 + 1}M 1000`]);
      qemuIo(b, [`write -P ${i + 2} ${i * 2 + 1}M 1000`]);
      expect(infoBitmaps(b)).toEqual(infoBitmaps(a));
    }
    // merge, from the same image and from another file
    must('qemu-img', ['bitmap', '--add', a, 'm']);
    expect((await cli(['bitmap', '--add', b, 'm'])).code).toBe(0);
    must('qemu-img', ['bitmap', '--merge', 'x', a, 'y']);
    expect((await cli(['bitmap', '--merge', 'x', b, 'y'])).code).toBe(0);
    must('qemu-img', ['bitmap', '--merge', 'y', '-b', b, '-F', 'qcow2', a, 'm']);
    expect((await cli(['bitmap', '--merge', 'y', '-b', a, '-F', 'qcow2', b, 'm'])).code).toBe(0);
    expect(infoBitmaps(b)).toEqual(infoBitmaps(a));
    for (const name of ['x', 'y', 'm']) expect(await bits(b, name)).toBe(await bits(a, name));
    expect(qemuCheck(a).status).toBe(0);
    expect(qemuCheck(b).status).toBe(0);
    // errors in qemu-img's words and exit codes
    for (const args of [
      ['--add', b, 'x'],
      ['--remove', b, 'nope'],
      ['--add', '-g', '1000', b, 'q'],
      ['--disable', '--add', b, 'q2'],
    ]) {
      const q = run('qemu-img', ['bitmap', ...args.map((s) => (s === b ? a : s))]);
      const e = await cli(['bitmap', ...args]);
      expect(e.code).toBe(q.status);
      // (our lines add the stable error code in brackets)
      const ours = e.err.replace(/^qcow2: /gm, 'qemu-img: ').replace(/ \[[A-Z0-9_]+\]$/gm, '');
      expect(ours.trim()).toBe(q.stderr.trim());
    }
  }, 180_000);

  it('convert --bitmaps copies the bitmaps; info and check agree with qemu-img', async () => {
    const src = t.file('conv-src.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', src, '32M']);
    must('qemu-img', ['bitmap', '--add', '-g', '8192', src, 'a']);
    must('qemu-img', ['bitmap', '--add', '--disable', src, 'd']);
    qemuIo(src, ['write -P 9 5M 100k']);
    const ours = t.file('conv-ours.qcow2');
    const theirs = t.file('conv-theirs.qcow2');
    must('qemu-img', ['convert', '--bitmaps', '-O', 'qcow2', src, theirs]);
    const r = await cli(['convert', '--bitmaps', '-O', 'qcow2', src, ours]);
    expect(r.code, r.err).toBe(0);
    expect(infoBitmaps(ours)).toEqual(infoBitmaps(theirs));
    for (const name of ['a', 'd']) expect(await bits(ours, name)).toBe(await bits(theirs, name));
    expect(qemuCheck(ours).status).toBe(0);
    const info = await cli(['info', '--output=json', ours]);
    expect(JSON.parse(info.out)['format-specific'].data.bitmaps).toEqual(infoBitmaps(theirs));
    const chk = await cli(['check', ours]);
    expect(chk.code).toBe(0);
  }, 120_000);

  it('snapshot apply is refused while the image has bitmaps; a resize resizes them', async () => {
    const f = t.file('snap.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '8M']);
    must('qemu-img', ['snapshot', '-c', 's1', f]);
    must('qemu-img', ['bitmap', '--add', '-g', '512', f, 'b']);
    const a = await cli(['snapshot', '-a', 's1', f]);
    const q = run('qemu-img', ['snapshot', '-a', 's1', f]);
    expect(a.code).toBe(q.status);
    expect(a.err).toContain('Device has active dirty bitmaps');
    expect(
      (
        await cli([
          'io',
          '-c',
          'write 7M 1M',
          '-c',
          'truncate 4M',
          '-c',
          'truncate 16M',
          '-c',
          'write 15M 512',
          f,
        ])
      ).code,
    ).toBe(0);
    expect(qemuCheck(f).status).toBe(0);
    expect(await bits(f, 'b')).toBe(`${15 * M}+512`);
    expect(fs.existsSync(f)).toBe(true);
  }, 60_000);

  it('qcow2 check agrees with qemu-img check: consistent, left in use by a crash, autoclear cleared', async () => {
    const consistent = t.file('chk-ok.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', consistent, '64M']);
    must('qemu-img', ['bitmap', '--add', consistent, 'b0']);
    qemuIo(consistent, ['write 0 1M']);
    const crashed = t.file('chk-crash.qcow2');
    fs.copyFileSync(consistent, crashed);
    run('qemu-io', ['-c', 'write 2M 512', '-c', 'sigraise 9', crashed]);
    const ignored = t.file('chk-ignored.qcow2');
    fs.copyFileSync(consistent, ignored);
    const b = fs.readFileSync(ignored);
    b[95] &= ~1; // autoclear bit 0 (byte 88..95, big-endian): what a program without bitmap support does
    fs.writeFileSync(ignored, b);
    for (const [f, code] of [
      [consistent, 0],
      [crashed, 0],
      [ignored, 3],
    ] as const) {
      for (const json of [false, true]) {
        const args = json ? ['check', '--output=json', f] : ['check', f];
        const q = run('qemu-img', args);
        const o = await cli(args);
        expect(q.status).toBe(code);
        expect(o.code).toBe(q.status);
        expect(o.out).toBe(q.stdout);
        expect(o.err.replace(/^qcow2:/gm, 'qemu-img:')).toBe(q.stderr);
      }
    }
  }, 120_000);

  it("a bitmap the engine cannot keep refuses a read-write open in QEMU's words, file untouched", () => {
    for (const [what, patch, words] of [
      [
        'reserved flag',
        (d: Buffer, e: number) => d.writeUInt32BE(0x6, e + 12),
        "Bitmap 'b' doesn't satisfy the constraints",
      ],
      [
        'unknown type',
        (d: Buffer, e: number) => (d[e + 16] = 2),
        "Bitmap 'b' doesn't satisfy the constraints",
      ],
      [
        'table too large',
        (d: Buffer, e: number) => d.writeUInt32BE(2, e + 8),
        "Could not read bitmap 'b' from image: Invalid argument",
      ],
    ] as const) {
      const f = t.file(`bad-${what.replace(/ /g, '-')}.qcow2`);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
      must('qemu-img', ['bitmap', '--add', f, 'b']);
      const d = fs.readFileSync(f);
      const entry = Number(d.readBigUInt64BE(findBitmapsExt(d) + 16));
      patch(d, entry);
      fs.writeFileSync(f, d);
      const q = run('qemu-io', ['-c', 'write 0 1', f]);
      expect(q.stderr + q.stdout, what).toContain(words);
      expect(() => Qcow2Image.open(f, { sync: false }), what).toThrow(words);
      expect(fs.readFileSync(f).equals(d), what).toBe(true);
    }
  });

  it("writes through a commit land in the base image's bitmaps, as with qemu-img commit", async () => {
    const bits2: string[] = [];
    for (const tool of ['qemu-img', 'qcow2'] as const) {
      const base = t.file(`commit-base-${tool}.qcow2`);
      const top = t.file(`commit-top-${tool}.qcow2`);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', base, '64M']);
      must('qemu-img', ['bitmap', '--add', base, 'b']);
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
      qemuIo(top, ['write 2M 4k', 'write -z 6M 64k']);
      if (tool === 'qemu-img') must('qemu-img', ['commit', '-q', top]);
      else expect((await cli(['commit', '-q', top])).code).toBe(0);
      expect(qemuCheck(base).status).toBe(0);
      bits2.push(await bits(base, 'b'));
    }
    expect(bits2[1]).toBe(bits2[0]);
    expect(bits2[0]).toBe(`${2 * M}+${64 * K} ${6 * M}+${64 * K}`);
  }, 60_000);
});
