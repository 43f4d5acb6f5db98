/**
 * qemu-img amend and the VM-state area, side by side with QEMU 7.2: the same image made twice
 * with qemu-img/qemu-io, amended once by `qcow2 amend` (the engine) and once by `qemu-img amend`;
 * then `qemu-img check` is clean on ours and both hold the same guest content, snapshots and
 * format-specific info. Refusals carry QEMU's words.
 */
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, must, qemuCheck, qemuIo, qemuRaw, tempDir, type TempDir } from '../support/qemu.ts';
import { Qcow2Image } from '../../src/image.ts';

async function ours(args: string[]): Promise<{ status: number; stderr: string }> {
  const r = await cli(args);
  return { status: r.code, stderr: r.err };
}

function formatSpecific(file: string): Record<string, unknown> {
  const j = JSON.parse(must('qemu-img', ['info', '--output=json', file])) as {
    'format-specific': { data: Record<string, unknown> };
    snapshots?: Array<{ name: string; 'vm-state-size': number }>;
  };
  return {
    ...j['format-specific'].data,
    snapshots: (j.snapshots ?? []).map((s) => [s.name, s['vm-state-size']]),
  };
}

let t: TempDir;
beforeAll(() => {
  t = tempDir('amend');
});
afterAll(() => t.cleanup());

/** Make `name` twice (a, b) with `make`, amend a with ours and b with qemu-img, compare. */
async function sideBySide(name: string, make: (f: string) => void, options: string): Promise<void> {
  const a = t.file(`${name}-ours.qcow2`);
  const b = t.file(`${name}-qemu.qcow2`);
  make(a);
  make(b);
  const r = await ours(['amend', '-o', options, a]);
  expect(r.status, r.stderr).toBe(0);
  must('qemu-img', ['amend', '-o', options, b]);
  const c = qemuCheck(a);
  expect(c.status, JSON.stringify(c.json) + c.stderr).toBe(0);
  expect(Buffer.compare(Buffer.from(qemuRaw(a)), Buffer.from(qemuRaw(b)))).toBe(0);
  expect(formatSpecific(a)).toEqual(formatSpecific(b));
}

function base(compat: string, extra = ''): (f: string) => void {
  return (f) => {
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `compat=${compat}${extra}`, f, '4M']);
    qemuIo(f, ['write -P 0x11 0 128k', 'write -z 64k 64k', 'write -P 0x22 1M 4k']);
    must('qemu-img', ['snapshot', '-c', 's1', f]);
    qemuIo(f, ['write -z 1M 64k', 'write -P 0x33 2M 64k', 'write -z -u 0 64k']);
  };
}

describe('qcow2 amend against qemu-img amend', () => {
  it('downgrades to compat=0.10, expanding zero clusters of the active tree and the snapshot', async () => {
    await sideBySide('down', base('1.1'), 'compat=0.10');
  });
  it('downgrades over a backing file (zero clusters become data clusters of zeros)', async () => {
    const backing = t.file('backing.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', backing, '4M']);
    qemuIo(backing, ['write -P 0x99 0 4M']);
    await sideBySide(
      'down-backed',
      (f) => {
        must('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', f]);
        qemuIo(f, ['write -z 0 64k', 'write -P 0x44 64k 4k']);
        must('qemu-img', ['snapshot', '-c', 's1', f]);
        qemuIo(f, ['write -z 128k 64k']);
      },
      'compat=0.10',
    );
    // the zeros must read as zeros, not as the backing file's 0x99
    expect(
      qemuRaw(t.file('down-backed-ours.qcow2'))
        .subarray(0, 65536)
        .every((x) => x === 0),
    ).toBe(true);
  });
  it('upgrades to compat=1.1 (snapshot extra data, feature table)', async () => {
    await sideBySide('up', base('0.10'), 'compat=1.1');
  });
  for (const bits of [1, 4, 64]) {
    it(`rewrites the refcount structures for refcount_bits=${bits}`, async () => {
      await sideBySide(
        `rb${bits}`,
        (f) => {
          must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', f, '4M']);
          qemuIo(f, ['write -P 0x11 0 300k', 'write -P 0x12 2M 100k']);
        },
        `refcount_bits=${bits}`,
      );
    });
  }
  it('turns lazy refcounts on and off', async () => {
    await sideBySide('lazy-on', base('1.1'), 'lazy_refcounts=on');
    await sideBySide('lazy-off', base('1.1', ',lazy_refcounts=on'), 'lazy_refcounts=off');
  });
  it('resizes (size=)', async () => {
    await sideBySide('size', base('1.1'), 'size=8M');
  });

  it('refuses what QEMU refuses, with its words, and writes nothing', async () => {
    const f = t.file('refuse.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=4', f, '4M']);
    qemuIo(f, ['write -P 1 0 64k']);
    must('qemu-img', ['snapshot', '-c', 's1', f]);
    const before = fs.readFileSync(f);
    const cases: Array<[string, RegExp]> = [
      ['compat=0.10', /compat=0\.10 requires refcount_bits=16/],
      [
        'refcount_bits=1',
        /Cannot decrease refcount entry width to 1 bits: Cluster at offset 0x[0-9a-f]+ has a refcount of 2/,
      ],
      ['refcount_bits=3', /Refcount width must be a power of two and may not exceed 64 bits/],
      [
        'cluster_size=4096',
        /Invalid parameter 'cluster_size'\nThis option is only supported for image creation/,
      ],
      ['backing_file=foo', /Cannot amend the backing file\nYou can use 'qemu-img rebase' instead\./],
      ['data_file=foo', /data-file can only be set for images that use an external data file/],
    ];
    for (const [opt, words] of cases) {
      const r = await ours(['amend', '-o', opt, f]);
      expect(r.status, opt).toBe(1);
      // (our own CLI adds the error code after the first line's message)
      expect(r.stderr.replace(/ \[[A-Z_]+[^\]]*\]/g, ''), opt).toMatch(words);
      const q = run2(['amend', '-o', opt, f]);
      expect(q.status, opt).toBe(1);
      expect(q.stderr.replace(/^qemu-img: /gm, ''), opt).toMatch(words);
    }
    expect(Buffer.compare(fs.readFileSync(f), before)).toBe(0);
    const l = t.file('lazy.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', l, '1M']);
    expect((await ours(['amend', '-o', 'lazy_refcounts=on', l])).stderr).toMatch(
      /Lazy refcounts only supported with compatibility level 1\.1 and above/,
    );
    const x = t.file('extl2.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', x, '1M']);
    expect((await ours(['amend', '-o', 'compat=0.10', x])).stderr).toMatch(
      /Cannot downgrade an image with incompatible features 0x10 set/,
    );
  });
  function run2(args: string[]): { status: number; stderr: string } {
    const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
    return { status: r.status ?? -1, stderr: r.stderr };
  }
});

describe('the VM-state area against qemu-io', () => {
  it('is where QEMU puts it: each tool reads what the other wrote, snapshots carry it', async () => {
    const f = t.file('vm.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, '64M']);
    qemuIo(f, ['write -b -P 0x11 0 64k', 'write -b -P 0x12 1T 4k']);
    const img = Qcow2Image.open(f);
    expect(img.readVmState(0, 65536).every((x) => x === 0x11)).toBe(true);
    expect(img.readVmState(2 ** 40, 4096).every((x) => x === 0x12)).toBe(true);
    img.createSnapshot('s1');
    img.writeVmState(4096, new Uint8Array(4096).fill(0x55));
    img.close();
    qemuIo(f, ['read -b -P 0x11 0 4096', 'read -b -P 0x55 4096 4096']);
    must('qemu-img', ['snapshot', '-a', 's1', f]);
    qemuIo(f, ['read -b -P 0x11 0 64k', 'read -b -P 0x12 1T 4k']);
    expect(qemuCheck(f).status).toBe(0);
    // a snapshot recording VM state: the size in the table (64-bit extra data too), the area
    // dropped from the active tree as QEMU does, the state kept in the snapshot
    const g = Qcow2Image.open(f);
    g.writeVmState(0, new Uint8Array(8192).fill(0x66));
    g.createSnapshot('with-vm', { vmStateSize: 8192 });
    expect(g.readVmState(0, 8192).every((x) => x === 0)).toBe(true);
    g.close();
    const listed = must('qemu-img', ['snapshot', '-l', f]);
    expect(listed).toMatch(/with-vm\s+8 KiB/);
    expect(qemuCheck(f).status).toBe(0);
    must('qemu-img', ['snapshot', '-a', 'with-vm', f]);
    qemuIo(f, ['read -b -P 0x66 0 8192']);
  });
});
