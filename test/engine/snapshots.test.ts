/**
 * Internal snapshots, both directions: snapshots qemu-img makes are listed, read, applied and
 * deleted by the engine (and the image stays clean for qemu-img check); snapshots the engine makes
 * are listed, applied and exported by qemu-img. Refcount widths too small for a snapshot refuse it
 * without touching the file; v2 images with snapshots refuse resize; v3 snapshots restore size.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { ExpectedDisk, pattern } from './model.ts';
import {
  checkBoth,
  errorCode,
  must,
  qemuCheck,
  qemuCreate,
  qemuInfo,
  qemuIo,
  qemuRaw,
  run,
  sameBytes,
  tempDir,
} from '../support/qemu.ts';

const tmp = tempDir('snapshots');
afterAll(() => tmp.cleanup());

const MiB = 1024 * 1024;

interface QemuLayout {
  name: string;
  opts: string;
  clusterSize: number;
}

const QEMU_LAYOUTS: QemuLayout[] = [
  { name: 'v3 4k refcount 16', opts: 'cluster_size=4096,compat=1.1', clusterSize: 4096 },
  { name: 'v3 64k refcount 4', opts: 'cluster_size=65536,compat=1.1,refcount_bits=4', clusterSize: 65536 },
  {
    name: 'v3 512 refcount 64 zstd',
    opts: 'cluster_size=512,compat=1.1,refcount_bits=64,compression_type=zstd',
    clusterSize: 512,
  },
  { name: 'v2 64k', opts: 'cluster_size=65536,compat=0.10', clusterSize: 65536 },
  { name: 'v3 2M refcount 8', opts: 'cluster_size=2097152,compat=1.1,refcount_bits=8', clusterSize: 2 * MiB },
];

describe('snapshots made by qemu-img, used by the engine', () => {
  it.each(QEMU_LAYOUTS.map((l) => [l.name, l] as [string, QemuLayout]))(
    '%s: list, read, apply, delete',
    (_n, l) => {
      const cs = l.clusterSize;
      const size = Math.max(4 * MiB, 16 * cs);
      const file = tmp.file(`q-${l.name.replace(/ /g, '_')}.qcow2`);
      qemuCreate(file, size, { opts: l.opts });
      qemuIo(file, [
        `write -P 0x11 0 ${3 * cs + 100}`,
        `write -c -P 0x12 ${6 * cs} ${cs}`,
        `write -P 0x13 ${size - cs} ${cs}`,
      ]);
      must('qemu-img', ['snapshot', '-c', 's1', file]);
      const copy1 = qemuRaw(file);
      qemuIo(file, [
        `write -P 0x21 ${cs / 2} ${cs}`,
        `write -z ${6 * cs} ${cs}`,
        `discard ${size - cs} ${cs}`,
        `write -P 0x22 ${8 * cs} 777`,
      ]);
      must('qemu-img', ['snapshot', '-c', 's2', file]);
      const copy2 = qemuRaw(file);
      qemuIo(file, [`write -P 0x31 0 ${2 * cs}`]);
      const current = qemuRaw(file);
      expect(sameBytes(copy1, copy2)).not.toBe('equal');

      const img = Qcow2Image.open(file, { sync: false });
      try {
        expect(img.listSnapshots().map((s) => [s.id, s.name])).toEqual([
          ['1', 's1'],
          ['2', 's2'],
        ]);
        expect(sameBytes(img.readSnapshot('s1', 0, size), copy1)).toBe('equal');
        expect(sameBytes(img.readSnapshot('2', 0, size), copy2)).toBe('equal');
        expect(sameBytes(img.read(0, size), current)).toBe('equal');
        img.applySnapshot('s1');
        expect(sameBytes(img.read(0, size), copy1)).toBe('equal');
        img.deleteSnapshot('s2');
        expect(img.listSnapshots().map((s) => s.name)).toEqual(['s1']);
        img.write(cs + 5, pattern(cs, 5)); // the active disk and s1 now diverge again
      } finally {
        img.close();
      }
      const c = checkBoth(file);
      expect(c.qemu).toBe(0);
      expect(c.engine).toBe(0);
      expect(qemuInfo(file).snapshots.map((s) => s.name)).toEqual(['s1']);
      expect(sameBytes(qemuRaw(file, { snapshot: 's1' }), copy1)).toBe('equal');
      const expected = copy1.slice();
      expected.set(pattern(cs, 5), cs + 5);
      expect(sameBytes(qemuRaw(file), expected)).toBe('equal');
    },
  );
});

interface EngineLayout {
  name: string;
  clusterSize: number;
  refcountBits: number;
  compat: '0.10' | '1.1';
}

const ENGINE_LAYOUTS: EngineLayout[] = [
  { name: 'v3 64k refcount 16', clusterSize: 65536, refcountBits: 16, compat: '1.1' },
  { name: 'v3 4k refcount 4', clusterSize: 4096, refcountBits: 4, compat: '1.1' },
  { name: 'v3 512 refcount 8', clusterSize: 512, refcountBits: 8, compat: '1.1' },
  { name: 'v2 64k', clusterSize: 65536, refcountBits: 16, compat: '0.10' },
  { name: 'v3 2M refcount 32', clusterSize: 2 * MiB, refcountBits: 32, compat: '1.1' },
];

describe('snapshots made by the engine, used by qemu-img', () => {
  it.each(ENGINE_LAYOUTS.map((l) => [l.name, l] as [string, EngineLayout]))(
    '%s: listed, exported and applied by qemu',
    (_n, l) => {
      const cs = l.clusterSize;
      const size = Math.max(4 * MiB, 16 * cs);
      const file = tmp.file(`e-${l.name.replace(/ /g, '_')}.qcow2`);
      const model = new ExpectedDisk(size);
      const img = Qcow2Image.create(file, {
        size,
        clusterSize: cs,
        refcountBits: l.refcountBits,
        compat: l.compat,
        sync: false,
      });
      const w = (off: number, len: number, seed: number): void => {
        const d = pattern(len, seed);
        img.write(off, d);
        model.write(off, d);
      };
      try {
        w(0, 3 * cs + 100, 1);
        w(size - cs - 3, cs, 2);
        img.createSnapshot('A');
        const copyA = model.copy();
        w(cs / 2, cs, 3); // copy-on-write of shared clusters
        img.writeZeroes(2 * cs, cs);
        model.zero(2 * cs, cs);
        img.createSnapshot('B');
        const copyB = model.copy();
        w(0, cs, 4);
        expect(sameBytes(img.readSnapshot('A', 0, size), copyA)).toBe('equal');
        expect(sameBytes(img.readSnapshot('B', 0, size), copyB)).toBe('equal');
        img.close();

        const c = checkBoth(file);
        expect(c.qemu).toBe(0);
        expect(c.engine).toBe(0);
        expect(qemuInfo(file).snapshots.map((s) => [s.id, s.name])).toEqual([
          ['1', 'A'],
          ['2', 'B'],
        ]);
        const list = must('qemu-img', ['snapshot', '-l', file]);
        expect(list).toMatch(/\bA\b/);
        expect(list).toMatch(/\bB\b/);
        expect(sameBytes(qemuRaw(file, { snapshot: 'A' }), copyA)).toBe('equal');
        expect(sameBytes(qemuRaw(file, { snapshot: 'B' }), copyB)).toBe('equal');
        expect(sameBytes(qemuRaw(file), model.bytes)).toBe('equal');

        const applied = tmp.file(`e-${l.name.replace(/ /g, '_')}-applied.qcow2`);
        fs.copyFileSync(file, applied);
        must('qemu-img', ['snapshot', '-a', 'A', applied]);
        expect(qemuCheck(applied).status).toBe(0);
        expect(sameBytes(qemuRaw(applied), copyA)).toBe('equal');
        must('qemu-img', ['snapshot', '-d', 'B', applied]);
        expect(qemuCheck(applied).status).toBe(0);
        const re = Qcow2Image.open(applied, { sync: false });
        try {
          expect(re.listSnapshots().map((s) => s.name)).toEqual(['A']);
          expect(sameBytes(re.read(0, size), copyA)).toBe('equal');
        } finally {
          re.close();
        }
      } finally {
        img.close();
      }
    },
  );

  it('applying a v3 snapshot restores its disk size (engine and qemu agree)', () => {
    const file = tmp.file('size.qcow2');
    const size = 2 * MiB;
    const img = Qcow2Image.create(file, { size, clusterSize: 65536, sync: false });
    const d = pattern(100_000, 9);
    img.write(size - 100_000, d);
    const before = img.read(0, size);
    img.createSnapshot('small');
    img.resize(3 * MiB);
    img.write(size + 10, pattern(1000, 10));
    expect(img.size).toBe(3 * MiB);
    const copy = tmp.file('size-copy.qcow2');
    img.flush();
    fs.copyFileSync(file, copy);
    img.applySnapshot('small');
    expect(img.size).toBe(size);
    expect(sameBytes(img.read(0, size), before)).toBe('equal');
    img.close();
    expect(qemuCheck(file).status).toBe(0);
    expect(qemuInfo(file).virtualSize).toBe(size);
    expect(sameBytes(qemuRaw(file), before)).toBe('equal');
    // qemu applies the same snapshot of the copy to the same size
    must('qemu-img', ['snapshot', '-a', 'small', copy]);
    expect(qemuInfo(copy).virtualSize).toBe(size);
    expect(sameBytes(qemuRaw(copy), before)).toBe('equal');
    // and the engine reads a qemu-made snapshot of a resized image with its own size
    const q = tmp.file('size-qemu.qcow2');
    qemuCreate(q, size, { opts: 'cluster_size=65536' });
    qemuIo(q, [`write -P 0x5a ${size - 4096} 4096`]);
    must('qemu-img', ['snapshot', '-c', 'small', q]);
    const qBefore = qemuRaw(q);
    must('qemu-img', ['resize', '-f', 'qcow2', q, String(3 * MiB)]);
    const qi = Qcow2Image.open(q, { sync: false });
    try {
      expect(qi.size).toBe(3 * MiB);
      expect(qi.listSnapshots()[0]?.diskSize).toBe(size);
      expect(sameBytes(qi.readSnapshot('small', 0, size), qBefore)).toBe('equal');
      qi.applySnapshot('small');
      expect(qi.size).toBe(size);
      expect(sameBytes(qi.read(0, size), qBefore)).toBe('equal');
    } finally {
      qi.close();
    }
    expect(qemuCheck(q).status).toBe(0);
  });
});

describe('snapshots the refcounts cannot hold are refused, leaving the image as it was', () => {
  it('refcount_bits=1: any snapshot of a written image (engine-made and qemu-made images)', () => {
    const engineFile = tmp.file('rc1-engine.qcow2');
    const img = Qcow2Image.create(engineFile, {
      size: 4 * MiB,
      clusterSize: 4096,
      refcountBits: 1,
      sync: false,
    });
    img.write(1000, pattern(10_000, 1));
    img.flush();
    const before = fs.readFileSync(engineFile);
    expect(errorCode(() => img.createSnapshot('s'))).toBe('REFCOUNT_OVERFLOW');
    expect(img.listSnapshots()).toEqual([]);
    img.close();
    expect(Buffer.compare(fs.readFileSync(engineFile), before)).toBe(0);
    const c = checkBoth(engineFile);
    expect(c.qemu).toBe(0);
    expect(c.engine).toBe(0);

    const qemuFile = tmp.file('rc1-qemu.qcow2');
    qemuCreate(qemuFile, 4 * MiB, { opts: 'cluster_size=4096,refcount_bits=1' });
    qemuIo(qemuFile, ['write -P 0x77 1000 10000']);
    const qBefore = fs.readFileSync(qemuFile);
    const q = Qcow2Image.open(qemuFile, { sync: false });
    try {
      expect(errorCode(() => q.createSnapshot('s'))).toBe('REFCOUNT_OVERFLOW');
    } finally {
      q.close();
    }
    expect(Buffer.compare(fs.readFileSync(qemuFile), qBefore)).toBe(0);
    expect(qemuCheck(qemuFile).status).toBe(0);
  });

  it('refcount_bits=2: two snapshots fit (refcount 3), the third is refused', () => {
    const file = tmp.file('rc2.qcow2');
    const img = Qcow2Image.create(file, { size: 4 * MiB, clusterSize: 4096, refcountBits: 2, sync: false });
    const d = pattern(20_000, 2);
    img.write(0, d);
    img.createSnapshot('one');
    img.createSnapshot('two');
    img.flush();
    const before = fs.readFileSync(file);
    expect(errorCode(() => img.createSnapshot('three'))).toBe('REFCOUNT_OVERFLOW');
    expect(img.listSnapshots().map((s) => s.name)).toEqual(['one', 'two']);
    img.close();
    expect(Buffer.compare(fs.readFileSync(file), before)).toBe(0);
    const c = checkBoth(file);
    expect(c.qemu).toBe(0);
    expect(c.engine).toBe(0);
    expect(sameBytes(qemuRaw(file, { snapshot: 'two' }).subarray(0, d.length), d)).toBe('equal');
  });
  it('refcount_bits=2: applying a snapshot while another one shares its clusters works (qemu-img refuses it)', () => {
    // Active + s1 + s2 share a cluster (refcount 3). qemu-img raises the refcounts of s1's tree
    // before dropping the old active tree's, so it overflows and fails ("Failed to load
    // snapshot", leaking a cluster). The engine changes only the net count: the shared clusters
    // stay at 3, and the revert succeeds.
    const file = tmp.file('rc2-apply.qcow2');
    qemuCreate(file, 4 * MiB, { opts: 'cluster_size=65536,refcount_bits=2' });
    qemuIo(file, ['write -P 1 0 200000']);
    must('qemu-img', ['snapshot', '-c', 's1', file]);
    const atS1 = qemuRaw(file);
    qemuIo(file, ['write -P 2 0 1000']);
    must('qemu-img', ['snapshot', '-c', 's2', file]);
    const copy = tmp.file('rc2-apply-qemu.qcow2');
    fs.copyFileSync(file, copy);
    expect(run('qemu-img', ['snapshot', '-a', 's1', copy]).status).not.toBe(0);

    const img = Qcow2Image.open(file, { sync: false });
    try {
      img.applySnapshot('s1');
      expect(sameBytes(img.read(0, 4 * MiB), atS1)).toBe('equal');
    } finally {
      img.close();
    }
    expect(sameBytes(qemuRaw(file), atS1)).toBe('equal');
    const c = checkBoth(file);
    expect(c.qemu).toBe(0);
    expect(c.engine).toBe(0);
  });
});

describe('v2 images with snapshots cannot be resized', () => {
  it('engine-made and qemu-made v2 images refuse resize with RESIZE_WITH_SNAPSHOTS', () => {
    const e = tmp.file('v2-engine.qcow2');
    const img = Qcow2Image.create(e, { size: 4 * MiB, compat: '0.10', sync: false });
    img.write(0, pattern(5000, 1));
    img.createSnapshot('s');
    expect(errorCode(() => img.resize(8 * MiB))).toBe('RESIZE_WITH_SNAPSHOTS');
    expect(errorCode(() => img.resize(2 * MiB, { shrink: true }))).toBe('RESIZE_WITH_SNAPSHOTS');
    expect(img.size).toBe(4 * MiB);
    img.close();
    expect(qemuCheck(e).status).toBe(0);
    // qemu-img refuses the same resize
    expect(must('qemu-img', ['info', e])).toMatch(/virtual size: 4 MiB/);
    const q = tmp.file('v2-qemu.qcow2');
    qemuCreate(q, 4 * MiB, { opts: 'compat=0.10' });
    qemuIo(q, ['write -P 1 0 5000']);
    must('qemu-img', ['snapshot', '-c', 's', q]);
    const qi = Qcow2Image.open(q, { sync: false });
    try {
      expect(errorCode(() => qi.resize(8 * MiB))).toBe('RESIZE_WITH_SNAPSHOTS');
    } finally {
      qi.close();
    }
    expect(qemuInfo(q).virtualSize).toBe(4 * MiB);
  });
});

describe('v2 snapshots through the shadow switch, in one open session', () => {
  it('a snapshot deleted, then another created: later writes keep the data around them (fuzz seed 1115665187)', () => {
    // The shadow switch writes its L2 copies past the L2 cache; one landed in the cluster of an L2
    // table the delete had freed, whose clean cache entry then stood for it: cluster 1 read zeros.
    const size = 131584;
    const file = tmp.file('v2-shadow-stale-cache.qcow2');
    const model = new ExpectedDisk(size);
    const img = Qcow2Image.create(file, {
      size,
      clusterSize: 512,
      refcountBits: 16,
      compat: '0.10',
      sync: false,
    });
    const w = (off: number, len: number, seed: number): void => {
      const d = pattern(len, seed);
      img.write(off, d);
      model.write(off, d);
    };
    try {
      w(1, 511, 1);
      img.createSnapshot('s1');
      w(302, 211, 2);
      expect(sameBytes(img.read(0, 512), model.copy().subarray(0, 512))).toBe('equal');
      img.deleteSnapshot('s1');
      w(0, 512, 3);
      w(1, 1535, 4);
      img.createSnapshot('s2');
      w(0, 512, 5);
      expect(sameBytes(img.read(0, 1536), model.copy().subarray(0, 1536))).toBe('equal');
    } finally {
      img.close();
    }
    expect(qemuCheck(file).status).toBe(0);
  });
});
