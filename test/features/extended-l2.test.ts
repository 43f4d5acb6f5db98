/**
 * Extended L2 entries (`-o extended_l2=on`), cluster sizes 16k..2M, both directions: subcluster
 * writes, zero writes, discard, snapshots and backing files. Content via `qemu-img convert`,
 * `qemu-img map --output=json` against the engine's blockStatus runs, `qemu-img check` clean.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import {
  engineMap,
  must,
  type MapExtent,
  pattern,
  qemuCheck,
  qemuIo,
  qemuMap,
  qemuRaw,
  sameBytes,
  tempDir,
  type TempDir,
} from '../support/qemu.ts';

type Op =
  | { op: 'write'; offset: number; length: number; fill: number }
  | { op: 'zero'; offset: number; length: number }
  | { op: 'discard'; offset: number; length: number };

/** A scenario of subcluster-sized operations for cluster size `cs` (subcluster `cs / 32`). */
function scenario(cs: number): Op[] {
  const sc = cs / 32;
  return [
    { op: 'write', offset: sc / 2, length: sc, fill: 0x41 }, // two partial subclusters
    { op: 'write', offset: 3 * sc, length: 2 * sc, fill: 0x42 }, // whole subclusters
    { op: 'zero', offset: 4 * sc, length: 3 * sc }, // zero bits over allocated + unallocated
    { op: 'write', offset: cs + 5 * sc, length: 512, fill: 0x43 }, // 512 bytes in cluster 1
    { op: 'write', offset: 2 * cs, length: cs, fill: 0x44 }, // a whole cluster
    { op: 'zero', offset: 2 * cs + 8 * sc, length: 4 * sc },
    { op: 'write', offset: 4 * cs, length: cs, fill: 0x45 },
    { op: 'discard', offset: 4 * cs, length: cs }, // whole cluster: freed
    { op: 'discard', offset: 2 * cs, length: sc }, // part of a cluster: nothing happens
    { op: 'zero', offset: 6 * cs, length: cs }, // a whole unallocated cluster
    { op: 'write', offset: 8 * cs - 2 * sc, length: 4 * sc, fill: 0x46 }, // across clusters
  ];
}

function qemuCmd(o: Op): string {
  if (o.op === 'write') return `write -P ${o.fill} ${o.offset} ${o.length}`;
  if (o.op === 'zero') return `write -z ${o.offset} ${o.length}`;
  return `discard ${o.offset} ${o.length}`;
}

function applyEngine(img: Qcow2Image, ops: readonly Op[]): void {
  for (const o of ops) {
    if (o.op === 'write') img.write(o.offset, new Uint8Array(o.length).fill(o.fill));
    else if (o.op === 'zero') img.writeZeroes(o.offset, o.length);
    else img.discard(o.offset, o.length);
  }
}

/** What the guest reads after `ops` (discard of whole clusters reads zeros without a backing file). */
function model(size: number, ops: readonly Op[], cs: number, base?: Uint8Array): Uint8Array {
  const b = base ? base.slice() : new Uint8Array(size);
  for (const o of ops) {
    if (o.op === 'write') b.fill(o.fill, o.offset, o.offset + o.length);
    else if (o.op === 'zero') b.fill(0, o.offset, o.offset + o.length);
    else {
      const first = Math.ceil(o.offset / cs) * cs;
      const end = Math.floor((o.offset + o.length) / cs) * cs;
      // v3: discarded whole clusters read as zeros, even over a backing file (QEMU sets the
      // zero flag rather than exposing the backing data).
      if (end > first) b.fill(0, first, end);
    }
  }
  return b;
}

function engineRead(file: string): Uint8Array {
  const img = Qcow2Image.open(file, { readOnly: true });
  try {
    return img.read(0, img.size);
  } finally {
    img.close();
  }
}

function engineMapOf(file: string): ReturnType<typeof engineMap> {
  const img = Qcow2Image.open(file, { readOnly: true });
  try {
    return engineMap(img);
  } finally {
    img.close();
  }
}

/**
 * A map without the host offsets QEMU reports for unallocated subclusters of allocated clusters
 * (present: false), adjacent equal extents merged again. The engine omits those offsets (see the
 * dedicated test below); every other test compares maps this way so that one divergence fails
 * one test.
 */
function withoutUnallocatedOffsets(m: readonly MapExtent[]): MapExtent[] {
  const out: MapExtent[] = [];
  for (const e of m) {
    const x: MapExtent = { ...e };
    if (!x.present) delete x.offset;
    const p = out[out.length - 1];
    if (
      p &&
      p.depth === x.depth &&
      p.present === x.present &&
      p.zero === x.zero &&
      p.data === x.data &&
      p.offset === undefined &&
      x.offset === undefined
    )
      p.length += x.length;
    else out.push(x);
  }
  return out;
}

function expectSameMap(file: string): void {
  expect(withoutUnallocatedOffsets(engineMapOf(file))).toEqual(withoutUnallocatedOffsets(qemuMap(file)));
}

function expectClean(file: string): void {
  const c = qemuCheck(file);
  expect({
    status: c.status,
    stderr: c.stderr,
    corruptions: c.json?.corruptions,
    leaks: c.json?.leaks,
  }).toEqual({ status: 0, stderr: '', corruptions: undefined, leaks: undefined });
}

for (const cs of [16384, 65536, 2 * 1024 * 1024]) {
  const size = 10 * cs;
  const label = cs >= 1 << 20 ? `${cs >> 20}M` : `${cs >> 10}k`;
  describe(`extended L2, cluster size ${label}`, () => {
    let t: TempDir;
    beforeAll(() => {
      t = tempDir(`extl2-${label}`);
    });
    afterAll(() => t.cleanup());
    const ops = scenario(cs);
    const create = (f: string, extra = ''): void => {
      must('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-o',
        `extended_l2=on,cluster_size=${cs}${extra}`,
        f,
        String(size),
      ]);
    };

    it('qemu-written: the engine reads the same content and maps it as qemu-img map', () => {
      const f = t.file('q.qcow2');
      create(f);
      qemuIo(f, ops.map(qemuCmd));
      const expected = model(size, ops, cs);
      expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
      expect(sameBytes(engineRead(f), expected)).toBe('equal');
      expectSameMap(f);
    });

    it('engine-written: qemu-img convert reads it, map agrees, check is clean', () => {
      const f = t.file('e.qcow2');
      const img = Qcow2Image.create(f, { size, clusterSize: cs, extendedL2: true, sync: false });
      try {
        applyEngine(img, ops);
      } finally {
        img.close();
      }
      const expected = model(size, ops, cs);
      expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
      expectClean(f);
      expectSameMap(f);
      const info = JSON.parse(must('qemu-img', ['info', '--output=json', f])) as {
        'format-specific': { data: { 'extended-l2': boolean } };
        'cluster-size': number;
      };
      expect(info['format-specific'].data['extended-l2']).toBe(true);
      expect(info['cluster-size']).toBe(cs);
    });

    it('mixed: the engine continues a qemu image and qemu continues an engine image', () => {
      const half = Math.floor(ops.length / 2);
      const q = t.file('mix-q.qcow2');
      create(q);
      qemuIo(q, ops.slice(0, half).map(qemuCmd));
      const a = Qcow2Image.open(q, { sync: false });
      try {
        applyEngine(a, ops.slice(half));
      } finally {
        a.close();
      }
      const e = t.file('mix-e.qcow2');
      const b = Qcow2Image.create(e, { size, clusterSize: cs, extendedL2: true, sync: false });
      try {
        applyEngine(b, ops.slice(0, half));
      } finally {
        b.close();
      }
      qemuIo(e, ops.slice(half).map(qemuCmd));
      const expected = model(size, ops, cs);
      for (const f of [q, e]) {
        expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
        expect(sameBytes(engineRead(f), expected)).toBe('equal');
        expectClean(f);
        expectSameMap(f);
      }
    });

    it('map: unallocated subclusters of an allocated cluster report its host offset, as qemu-img map', () => {
      // QEMU (qcow2_co_block_status) reports QCOW2_SUBCLUSTER_UNALLOCATED_ALLOC with
      // BDRV_BLOCK_OFFSET_VALID: qemu-img map prints "present": false with an "offset".
      const f = t.file('map.qcow2');
      create(f);
      qemuIo(f, [`write -P 1 0 ${cs / 32}`, `write -P 2 ${(cs / 32) * 3} ${cs / 32}`]);
      const q = qemuMap(f);
      expect(q[1]).toMatchObject({ start: cs / 32, present: false, data: false, zero: true });
      expect(q[1]?.offset).toBeDefined();
      expect(engineMapOf(f)).toEqual(q);
    });

    it('snapshots: engine snapshots read by qemu, qemu snapshots read by the engine', () => {
      const first = ops.slice(0, 4);
      const f = t.file('snap-e.qcow2');
      const img = Qcow2Image.create(f, { size, clusterSize: cs, extendedL2: true, sync: false });
      try {
        applyEngine(img, first);
        img.createSnapshot('s1');
        applyEngine(img, ops.slice(4));
        // A subcluster write into a cluster shared with the snapshot (copy-on-write of one subcluster).
        img.write(cs / 32, new Uint8Array(512).fill(0x77));
      } finally {
        img.close();
      }
      const atSnap = model(size, first, cs);
      const now = model(size, [...ops, { op: 'write', offset: cs / 32, length: 512, fill: 0x77 }], cs);
      expect(sameBytes(qemuRaw(f), now)).toBe('equal');
      const snapRaw = t.file('snap.raw');
      must('qemu-img', ['convert', '-l', 'snapshot.name=s1', '-O', 'raw', f, snapRaw]);
      expect(sameBytes(new Uint8Array(fs.readFileSync(snapRaw)), atSnap)).toBe('equal');
      expectClean(f);

      const q = t.file('snap-q.qcow2');
      create(q);
      qemuIo(q, first.map(qemuCmd));
      must('qemu-img', ['snapshot', '-c', 's1', q]);
      qemuIo(q, [...ops.slice(4).map(qemuCmd), `write -P 0x77 ${cs / 32} 512`]);
      const r = Qcow2Image.open(q, { readOnly: true });
      try {
        expect(sameBytes(r.readSnapshot('s1', 0, size), atSnap)).toBe('equal');
        expect(sameBytes(r.read(0, size), now)).toBe('equal');
      } finally {
        r.close();
      }
      // The engine reverts qemu's image to s1; qemu reads the reverted content.
      const w = Qcow2Image.open(q, { sync: false });
      try {
        w.applySnapshot('s1');
      } finally {
        w.close();
      }
      expect(sameBytes(qemuRaw(q), atSnap)).toBe('equal');
      expectClean(q);
    });

    it('backing files: unallocated subclusters read through to the backing image', () => {
      const base = t.file('base.qcow2');
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cs}`, base, String(size)]);
      const baseData = pattern(size, 42);
      const bi = Qcow2Image.open(base, { sync: false });
      try {
        bi.write(0, baseData);
      } finally {
        bi.close();
      }
      const expected = model(size, ops, cs, baseData);
      // engine overlay
      const e = t.file('over-e.qcow2');
      const img = Qcow2Image.create(e, {
        size,
        clusterSize: cs,
        extendedL2: true,
        backingFile: 'base.qcow2',
        backingFormat: 'qcow2',
        sync: false,
      });
      try {
        applyEngine(img, ops);
      } finally {
        img.close();
      }
      // qemu overlay
      const q = t.file('over-q.qcow2');
      must(
        'qemu-img',
        [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          `extended_l2=on,cluster_size=${cs}`,
          '-b',
          'base.qcow2',
          '-F',
          'qcow2',
          q,
          String(size),
        ],
        { cwd: t.dir },
      );
      qemuIo(q, ops.map(qemuCmd));
      for (const f of [e, q]) {
        expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
        expect(sameBytes(engineRead(f), expected)).toBe('equal');
        expectClean(f);
        expectSameMap(f);
      }
    });
  });
}
