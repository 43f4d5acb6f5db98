/**
 * Dirty images (lazy refcounts, qemu-io killed mid-session) and hostile headers: a read-only open
 * takes the image as it is, a read-write open repairs it; byte-patched headers throw a Qcow2Error
 * with a stable code (never another kind of error); a 2 TiB sparse image opens and reads without
 * memory growing with its size.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Qcow2Error } from '../../src/errors.ts';
import { Qcow2Image } from '../../src/image.ts';
import { openImage } from '../../src/open.ts';
import { pattern } from './model.ts';
import {
  checkBoth,
  errorCode,
  qemuCheck,
  qemuCreate,
  qemuIo,
  qemuRaw,
  run,
  sameBytes,
  tempDir,
} from '../support/qemu.ts';

const tmp = tempDir('hostile');
afterAll(() => tmp.cleanup());

const MiB = 1024 * 1024;

describe('dirty images (lazy_refcounts=on, qemu-io killed)', () => {
  it('open read-only as they are; a read-write open repairs them', () => {
    const file = tmp.file('dirty.qcow2');
    qemuCreate(file, 8 * MiB, { opts: 'cluster_size=65536,lazy_refcounts=on' });
    qemuIo(file, ['write -P 0x33 0 65536']); // some clean history first
    const killed = run('qemu-io', [
      '-f',
      'qcow2',
      '-c',
      'write -P 0x5a 65536 1048576',
      '-c',
      'write -P 0x5b 4194304 100000',
      '-c',
      'sigraise 9',
      file,
    ]);
    expect(killed.status).not.toBe(0);
    const bytes = new Uint8Array(fs.readFileSync(file));
    expect(bytes[79]! & 1).toBe(1); // incompatible bit 0: dirty
    const expected = new Uint8Array(8 * MiB);
    expected.fill(0x33, 0, 65536);
    expected.fill(0x5a, 65536, 65536 + MiB);
    expected.fill(0x5b, 4194304, 4194304 + 100000);

    const before = checkBoth(file);
    expect(before.qemu).toBe(2);
    expect(before.engine).toBe(before.qemu);

    const ro = Qcow2Image.open(file, { readOnly: true, sync: false });
    try {
      expect(sameBytes(ro.read(0, ro.size), expected)).toBe('equal');
    } finally {
      ro.close();
    }
    expect(Buffer.compare(fs.readFileSync(file), Buffer.from(bytes))).toBe(0); // untouched

    const rw = Qcow2Image.open(file, { sync: false });
    try {
      expect(sameBytes(rw.read(0, rw.size), expected)).toBe('equal');
      rw.write(2 * MiB, pattern(1000, 1));
      expected.set(pattern(1000, 1), 2 * MiB);
    } finally {
      rw.close();
    }
    const after = checkBoth(file);
    expect(after.qemu).toBe(0);
    expect(after.engine).toBe(0);
    expect(new Uint8Array(fs.readFileSync(file))[79]! & 1).toBe(0);
    expect(sameBytes(qemuRaw(file), expected)).toBe('equal');
  });
});

// ---------------------------------------------------------------- hostile headers

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** A fresh qemu-made v3 image (64 KiB clusters, 64 MiB) with some data, as bytes. */
function baseImage(name: string): Uint8Array {
  const file = tmp.file(name);
  qemuCreate(file, 64 * MiB, { opts: 'cluster_size=65536' });
  qemuIo(file, ['write -P 0x42 0 200000', `write -P 0x43 ${32 * MiB} 65536`]);
  return new Uint8Array(fs.readFileSync(file));
}

/** Offset of the feature name table's data (extension 0x6803F857) in a v3 header. */
function featureTableOffset(b: Uint8Array): number {
  const v = view(b);
  let o = v.getUint32(100);
  for (;;) {
    const type = v.getUint32(o);
    const len = v.getUint32(o + 4);
    if (type === 0) throw new Error('no feature name table');
    if (type === 0x6803f857) return o + 8;
    o += 8 + ((len + 7) & ~7);
  }
}

interface Patch {
  name: string;
  code: string;
  patch: (b: Uint8Array) => void;
  message?: RegExp;
}

const PATCHES: Patch[] = [
  { name: 'bad magic', code: 'BAD_MAGIC', patch: (b) => view(b).setUint32(0, 0x51464900) },
  { name: 'version 4', code: 'UNSUPPORTED_VERSION', patch: (b) => view(b).setUint32(4, 4) },
  { name: 'cluster_bits 8', code: 'BAD_CLUSTER_BITS', patch: (b) => view(b).setUint32(20, 8) },
  { name: 'cluster_bits 22', code: 'BAD_CLUSTER_BITS', patch: (b) => view(b).setUint32(20, 22) },
  { name: 'header_length 100', code: 'BAD_HEADER_LENGTH', patch: (b) => view(b).setUint32(100, 100) },
  {
    name: 'unknown incompatible bit 0x100, named in the feature table',
    code: 'UNKNOWN_INCOMPAT_FEATURE',
    message: /time travel/,
    patch: (b) => {
      view(b).setBigUint64(72, 0x100n);
      const t = featureTableOffset(b); // first entry becomes {incompatible, bit 8, "time travel"}
      b.fill(0, t, t + 48);
      b[t] = 0;
      b[t + 1] = 8;
      b.set(new TextEncoder().encode('time travel'), t + 2);
    },
  },
  {
    name: 'L1 size above 32 MiB / 8',
    code: 'L1_TOO_LARGE',
    patch: (b) => view(b).setUint32(36, (32 * MiB) / 8 + 1),
  },
  {
    name: 'refcount table above 8 MiB',
    code: 'REFTABLE_TOO_LARGE',
    patch: (b) => view(b).setUint32(56, (8 * MiB) / 65536 + 1),
  },
  { name: 'nb_snapshots 65537', code: 'TOO_MANY_SNAPSHOTS', patch: (b) => view(b).setUint32(60, 65537) },
  {
    name: 'backing name of 2000 bytes',
    code: 'BACKING_NAME_TOO_LONG',
    patch: (b) => {
      view(b).setBigUint64(8, 0x1000n);
      view(b).setUint32(16, 2000);
      b.fill(0x61, 0x1000, 0x1000 + 2000);
    },
  },
  { name: 'crypt_method 3', code: 'BAD_CRYPT_METHOD', patch: (b) => view(b).setUint32(32, 3) },
  { name: 'refcount_order 7', code: 'BAD_REFCOUNT_ORDER', patch: (b) => view(b).setUint32(96, 7) },
];

describe('hostile headers are refused with a stable Qcow2Error code', () => {
  const base = baseImage('hostile-base.qcow2');

  it.each(PATCHES.map((p) => [p.name, p] as [string, Patch]))('%s', (_n, p) => {
    const bytes = base.slice();
    p.patch(bytes);
    const file = tmp.file(`hostile-${p.code}-${p.name.length}.qcow2`);
    fs.writeFileSync(file, bytes);
    expect(errorCode(() => Qcow2Image.open(file, { readOnly: true, sync: false }).close())).toBe(p.code);
    expect(errorCode(() => Qcow2Image.open(file, { sync: false }).close())).toBe(p.code);
    if (p.code !== 'BAD_MAGIC')
      expect(errorCode(() => openImage(file, { readOnly: true, sync: false }).close())).toBe(p.code);
    if (p.message) {
      try {
        Qcow2Image.open(file, { readOnly: true, sync: false });
      } catch (e) {
        expect(e instanceof Qcow2Error ? e.message : String(e)).toMatch(p.message);
      }
    }
    // qemu refuses the same header
    expect(run('qemu-img', ['info', '-f', 'qcow2', file], { timeoutMs: 20_000 }).status).not.toBe(0);
    expect(Buffer.compare(fs.readFileSync(file), Buffer.from(bytes))).toBe(0); // refused opens write nothing
  });

  it('random header corruption either opens or throws a Qcow2Error, never anything else', () => {
    const file = tmp.file('fuzz.qcow2');
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ at: fc.integer({ min: 0, max: 111 }), value: fc.integer({ min: 0, max: 255 }) }),
          { minLength: 1, maxLength: 6 },
        ),
        (edits) => {
          const bytes = base.slice();
          for (const e of edits) bytes[e.at] = e.value;
          fs.writeFileSync(file, bytes);
          let img: Qcow2Image | undefined;
          const tolerate = (fn: () => void): void => {
            try {
              fn();
            } catch (e) {
              if (!(e instanceof Qcow2Error)) throw e;
            }
          };
          tolerate(() => {
            img = Qcow2Image.open(file, { readOnly: true, sync: false, openBacking: false });
            const size = img.size;
            for (const off of [0, 100_000, Math.floor(size / 2), Math.max(0, size - 4096)]) {
              const at = Math.min(off, size);
              img.read(at, Math.min(4096, size - at));
            }
          });
          tolerate(() => img?.close());
        },
      ),
      { seed: 0x4ead, numRuns: 300 },
    );
  });
});

describe('a 2 TiB sparse image', () => {
  it('opens and reads scattered offsets without memory growing with its size', () => {
    const TiB = 1024 * 1024 * MiB;
    const file = tmp.file('huge.qcow2');
    qemuCreate(file, 2 * TiB);
    const offsets = [0, 0.5 * TiB + 12345, TiB, 1.5 * TiB + 65536 * 7, 2 * TiB - 4096];
    qemuIo(
      file,
      offsets.map((o, i) => `write -P ${0x10 + i} ${o} 4096`),
    );
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    const img = Qcow2Image.open(file, { readOnly: true, sync: false });
    try {
      expect(img.size).toBe(2 * TiB);
      offsets.forEach((o, i) => {
        expect(img.read(o, 4096).every((b) => b === 0x10 + i)).toBe(true);
        expect(img.read(o + 4096 <= img.size - 4096 ? o + 4096 : o - 4096, 4096).every((b) => b === 0)).toBe(
          true,
        );
      });
      expect(img.blockStatus(TiB, 4096).data).toBe(true);
      expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * MiB);
    } finally {
      img.close();
    }

    const mine = tmp.file('huge-engine.qcow2');
    const rss1 = process.memoryUsage().rss;
    const e = Qcow2Image.create(mine, { size: 2 * TiB, sync: false });
    try {
      offsets.forEach((o, i) => e.write(o, new Uint8Array(4096).fill(0x10 + i)));
      expect(process.memoryUsage().rss - rss1).toBeLessThan(200 * MiB);
    } finally {
      e.close();
    }
    expect(qemuCheck(mine).status).toBe(0);
    expect(fs.statSync(mine).size).toBeLessThan(64 * MiB);
    const io = run('qemu-io', [
      '-f',
      'qcow2',
      ...offsets.flatMap((o, i) => ['-c', `read -P ${0x10 + i} ${o} 4096`]),
      mine,
    ]);
    expect(io.stdout + io.stderr).not.toMatch(/verification failed/i);
    expect(io.status).toBe(0);
  });
});
