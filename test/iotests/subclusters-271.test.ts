/**
 * Regressions from qemu-iotest 271 (extended L2 entries): the same qemu-io steps run with our CLI
 * (as `qemu-img`/`qemu-io`) and with QEMU's tools, and the L2 entries + bitmaps they leave must
 * be the same. Our CLI runs from the build (bin/qcow2.js → dist).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'qcow2.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotests-271-'));
const tools = path.join(dir, 'bin');
fs.mkdirSync(tools);
for (const n of ['qemu-img', 'qemu-io']) fs.symlinkSync(BIN, path.join(tools, n));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Side = 'ours' | 'qemu';

/** Runs a tool of one side; the real tools must be installed (no silent skip). */
function run(side: Side, name: 'qemu-img' | 'qemu-io', args: string[]): string {
  const exe = side === 'ours' ? path.join(tools, name) : name;
  const r = spawnSync(exe, args, { encoding: 'utf8', timeout: 120_000, cwd: dir });
  if (r.error) throw r.error;
  expect(r.status, `${side} ${name} ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout + r.stderr;
}

/** L2 entries (entry word + bitmap word, hex) of guest clusters `from`..`to` (first L2 table). */
function l2Entries(file: string, from: number, to: number): string[] {
  const b = fs.readFileSync(file);
  const l1 = Number(b.readBigUInt64BE(40));
  const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  const out: string[] = [];
  for (let c = from; c <= to; c++)
    out.push(
      `#${c}: ${b.readBigUInt64BE(l2 + c * 16).toString(16)} ${b.readBigUInt64BE(l2 + c * 16 + 8).toString(16)}`,
    );
  return out;
}

/** A 1 MiB..2 MiB image with extended L2 over a raw base full of 0xff, clusters compressed. */
function setup(side: Side, name: string, compressed: number[]): string {
  const base = path.join(dir, `${side}-${name}.base`);
  const file = path.join(dir, `${side}-${name}.qcow2`);
  run(side, 'qemu-img', ['create', '-f', 'raw', base, '2M']);
  run(side, 'qemu-io', ['-f', 'raw', '-c', 'write -q -P 0xff 0 2M', base]);
  run(side, 'qemu-img', [
    'create',
    '-f',
    'qcow2',
    '-o',
    'extended_l2=on',
    '-F',
    'raw',
    '-b',
    base,
    file,
    '2M',
  ]);
  for (const c of compressed) run(side, 'qemu-io', ['-c', `write -q -c -P ${c} ${c * 64}k 64k`, file]);
  return file;
}

describe('iotest 271: zero writes over compressed clusters', () => {
  it('a subcluster-aligned request refused by a compressed head is written as data (clusters #21-#23)', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    for (const side of ['ours', 'qemu'] as const) {
      const f = setup(side, 'aligned', [21, 22, 23]);
      run(side, 'qemu-io', ['-c', 'write -q -z 1376k 128k', f]);
      got[side] = l2Entries(f, 21, 23);
    }
    expect(got.ours).toEqual(got.qemu);
    expect(got.qemu[1]).toMatch(/ ffffffff$/); // all allocated, no zero bits
  });

  it('an unaligned request: head as data, bulk as zero bits, tail COW (clusters #27-#29)', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    for (const side of ['ours', 'qemu'] as const) {
      const f = setup(side, 'unaligned', [27, 28]);
      run(side, 'qemu-io', ['-c', 'write -q -z 1759k 128k', f]);
      got[side] = l2Entries(f, 27, 29);
    }
    expect(got.ours).toEqual(got.qemu);
    expect(got.qemu[0]).toMatch(/ ffff00000000ffff$/);
  });

  it('zero+unmap over compressed clusters: refused pieces allocate their clusters as one run', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    const cs = [18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28];
    for (const side of ['ours', 'qemu'] as const) {
      const f = setup(side, 'unmap', cs);
      for (const cmd of ['1152k 192k', '1376k 128k', '1567k 129k', '1759k 128k'])
        run(side, 'qemu-io', ['-c', `write -q -z -u ${cmd}`, f]);
      got[side] = l2Entries(f, 18, 29);
    }
    expect(got.ours).toEqual(got.qemu);
  });

  it('a write allocates the clusters it needs as one run (extended L2 too)', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    for (const side of ['ours', 'qemu'] as const) {
      const f = path.join(dir, `${side}-run.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '1M']);
      for (let c = 0; c < 5; c++) run(side, 'qemu-io', ['-c', `write -q -P ${c + 1} ${c * 64}k 64k`, f]);
      // Holes: one free cluster (guest #1's), then two adjacent ones (#3's and #4's).
      run(side, 'qemu-io', ['-c', 'discard -q 64k 64k', '-c', 'discard -q 192k 128k', f]);
      run(side, 'qemu-io', ['-c', 'write -q -P 9 384k 128k', f]);
      got[side] = l2Entries(f, 6, 7);
    }
    expect(got.ours).toEqual(got.qemu);
  });

  it('a shrink clears the zero bits of the clusters it drops (full discard)', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    for (const side of ['ours', 'qemu'] as const) {
      const f = path.join(dir, `${side}-shrink.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '1M']);
      run(side, 'qemu-io', ['-c', 'write -q 0 128k', '-c', 'discard -q 0 128k', f]);
      run(side, 'qemu-img', ['resize', '--shrink', f, '64k']);
      run(side, 'qemu-img', ['resize', f, '1M']);
      got[side] = l2Entries(f, 0, 1);
    }
    expect(got.ours).toEqual(got.qemu);
    expect(got.qemu[1]).toBe('#1: 0 0');
  });

  it('a read of an entry with both bits set on one subcluster fails with QEMU words', () => {
    const got: Record<Side, string> = { ours: '', qemu: '' };
    for (const side of ['ours', 'qemu'] as const) {
      const f = path.join(dir, `${side}-invalid.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '1M']);
      run(side, 'qemu-io', ['-c', 'write -q 32k 128k', f]);
      const b = fs.readFileSync(f);
      b.writeUInt32BE(1, 0x40000 + 24); // zero bit of subcluster 0 of cluster #1 (all allocated)
      fs.writeFileSync(f, b);
      const exe = side === 'ours' ? path.join(tools, 'qemu-io') : 'qemu-io';
      const r = spawnSync(exe, ['-c', 'read 0 192k', f], { encoding: 'utf8', cwd: dir });
      got[side] = (r.stdout + r.stderr).replaceAll(dir, '');
    }
    expect(got.ours).toBe(got.qemu);
    expect(got.qemu).toContain('Invalid cluster entry found  (L2 offset: 0x40000, L2 index: 0x1)');
  });

  it('writes: an invalid entry fails the write, an in-place write keeps a stray bit', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    for (const side of ['ours', 'qemu'] as const) {
      const exe = side === 'ours' ? path.join(tools, 'qemu-io') : 'qemu-io';
      const f = path.join(dir, `${side}-wr.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '1M']);
      run(side, 'qemu-io', ['-c', 'write -q -P 0x11 0 2k', f]);
      let b = fs.readFileSync(f);
      b[0x40000 + 7] = 1; // the standard descriptor's zero bit, unused with extended L2
      fs.writeFileSync(f, b);
      run(side, 'qemu-io', ['-c', 'write -q -P 0x11 0 1k', f]);
      got[side].push(...l2Entries(f, 0, 0));
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '1M']);
      run(side, 'qemu-io', ['-c', 'write -q 256k 1k', f]);
      b = fs.readFileSync(f);
      b.writeUInt32BE(1, 0x40000 + 12); // allocation bit without a host cluster (cluster #0)
      fs.writeFileSync(f, b);
      const r = spawnSync(exe, ['-c', 'write 0 1k', f], { encoding: 'utf8', cwd: dir });
      got[side].push((r.stdout + r.stderr).replaceAll(dir, ''));
    }
    expect(got.ours).toEqual(got.qemu);
    expect(got.qemu[0]).toBe('#0: 8000000000050001 1');
    expect(got.qemu[1]).toContain('Invalid cluster entry found (L2 offset: 0x40000, L2 index: 0)');
  });

  it('a read of an entry with an unaligned host offset fails with QEMU words, whatever its subcluster', () => {
    const got: Record<Side, string> = { ours: '', qemu: '' };
    for (const side of ['ours', 'qemu'] as const) {
      const f = path.join(dir, `${side}-unaligned.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '128k']);
      run(side, 'qemu-io', ['-c', 'write -q -P 1 4k 2k', f]);
      const b = fs.readFileSync(f);
      b[0x40000 + 6] = 2; // host offset 0x50200
      fs.writeFileSync(f, b);
      const exe = side === 'ours' ? path.join(tools, 'qemu-io') : 'qemu-io';
      const r = spawnSync(exe, ['-c', 'read -q 0 2k', f], { encoding: 'utf8', cwd: dir });
      got[side] = (r.stdout + r.stderr).replaceAll(dir, '');
    }
    expect(got.ours).toBe(got.qemu);
    expect(got.qemu).toContain(
      'Cluster allocation offset 0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)',
    );
  });

  it('copy-on-write of a cluster shared with a snapshot copies out to its allocated subclusters', () => {
    const got: Record<Side, string[]> = { ours: [], qemu: [] };
    for (const side of ['ours', 'qemu'] as const) {
      const f = path.join(dir, `${side}-snapcow.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'qcow2', '-o', 'extended_l2=on', f, '1M']);
      for (const c of [0, 1])
        run(side, 'qemu-io', [
          '-c',
          `write -q -z ${64 * c + 14}k 2k`,
          '-c',
          `write -q ${64 * c + 26}k 2k`,
          '-c',
          `write -q ${64 * c + 36}k 2k`,
          f,
        ]);
      run(side, 'qemu-img', ['snapshot', '-c', 'snap1', f]);
      run(side, 'qemu-io', ['-c', 'write -q -P 0xf0 30k 1k', '-c', 'write -q -P 0xf4 78k 1k', f]);
      const b = fs.readFileSync(f);
      const l2 = Number(b.readBigUInt64BE(Number(b.readBigUInt64BE(40))) & 0x00fffffffffffe00n);
      got[side] = [0, 1].map((c) => b.readBigUInt64BE(l2 + c * 16 + 8).toString(16));
      expect(run(side, 'qemu-img', ['check', f])).toContain('No errors');
    }
    expect(got.ours).toEqual(got.qemu);
    expect(got.qemu).toEqual(['800007e000', '7ff80']);
  });

  it('preallocation=metadata over a backing file leaves the subclusters unallocated', () => {
    const got: Record<Side, string> = { ours: '', qemu: '' };
    for (const side of ['ours', 'qemu'] as const) {
      const base = path.join(dir, `${side}-pre.base`);
      const f = path.join(dir, `${side}-pre.qcow2`);
      run(side, 'qemu-img', ['create', '-f', 'raw', base, '1M']);
      run(side, 'qemu-io', ['-f', 'raw', '-c', 'write -q -P 0xff 0 1M', base]);
      run(side, 'qemu-img', [
        'create',
        '-f',
        'qcow2',
        '-o',
        'extended_l2=on,preallocation=metadata',
        '-F',
        'raw',
        '-b',
        base,
        f,
        '512k',
      ]);
      got[side] = l2Entries(f, 0, 7).join('\n') + run(side, 'qemu-io', ['-c', 'read -q -P 0xff 0 512k', f]);
    }
    expect(got.ours).toBe(got.qemu);
    expect(got.qemu).toContain('#0: 8000000000050000 0\n');
  });
});
