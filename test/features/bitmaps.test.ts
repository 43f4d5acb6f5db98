/**
 * Persistent bitmaps: the pure codec (src/format/bitmaps.ts) on directories QEMU wrote, and the
 * engine's handling of images with bitmaps against qemu-img 7.2.
 *
 * What QEMU 7.2 does when autoclear bit 0 is clear (block/qcow2.c, qcow2_read_extensions): it
 * ignores the bitmaps extension entirely, warning "a program lacking bitmap support modified this
 * file, so all bitmaps are now considered inconsistent" and "Some clusters may be leaked, run
 * 'qemu-img check -r' on the image file to fix.". So `qemu-img info` lists no bitmaps, and
 * `qemu-img check` counts the bitmap directory, the bitmap tables and the bitmap data clusters as
 * leaks (exit 3, no corruption); `check -r leaks` frees them and drops the extension.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptionError } from '../../src/errors.ts';
import {
  BME_FLAG_AUTO,
  BME_FLAG_IN_USE,
  bitmapDirectorySize,
  bitmapTableEntriesNeeded,
  decodeBitmapDirectory,
  decodeBitmapTable,
  decodeBitmapTableEntry,
  encodeBitmapDirectory,
  encodeBitmapTable,
  newBitmapEntry,
  validateBitmapDirectory,
  validateBitmapEntry,
  validateBitmapsExtension,
  type BitmapDirectoryEntry,
} from '../../src/format/bitmaps.ts';
import { AUTOCLEAR_BITMAPS } from '../../src/format/constants.ts';
import { bitmapsExtension, decodeHeader, type Header } from '../../src/format/header.ts';
import { Qcow2Image } from '../../src/image.ts';
import {
  cli,
  must,
  qemuCheck,
  qemuIo,
  qemuRaw,
  run,
  sameBytes,
  tempDir,
  type TempDir,
} from '../support/qemu.ts';

const SIZE = 64 << 20;
const CS = 65536;

function headerOf(file: string): Header {
  const b = new Uint8Array(CS);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, b, 0, CS, 0);
  } finally {
    fs.closeSync(fd);
  }
  return decodeHeader(b);
}

function readAt(file: string, offset: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, b, 0, length, offset);
  } finally {
    fs.closeSync(fd);
  }
  return b;
}

function directoryOf(file: string): { raw: Uint8Array; entries: BitmapDirectoryEntry[]; offset: number } {
  const ext = bitmapsExtension(headerOf(file));
  if (!ext) throw new Error(`${file} has no bitmaps extension`);
  const raw = readAt(file, ext.bitmapDirectoryOffset, ext.bitmapDirectorySize);
  return {
    raw,
    entries: decodeBitmapDirectory(raw, ext.nbBitmaps, { directoryOffset: ext.bitmapDirectoryOffset }),
    offset: ext.bitmapDirectoryOffset,
  };
}

/** Clusters the bitmaps own: directory, tables, data clusters. */
function bitmapClusters(file: string): number {
  const d = directoryOf(file);
  let n = Math.ceil(d.raw.length / CS);
  for (const e of d.entries) {
    n += Math.ceil((e.bitmapTableSize * 8) / CS);
    const table = decodeBitmapTable(
      readAt(file, e.bitmapTableOffset, e.bitmapTableSize * 8),
      e.bitmapTableSize,
      { clusterSize: CS, tableOffset: e.bitmapTableOffset },
    );
    n += table.filter((x) => x.kind === 'data').length;
  }
  return n;
}

/** qemu-img: a 64 MiB image, bitmap b0 (auto, 64k, with dirty data), b1 (disabled, 512k). */
function qemuImageWithBitmaps(file: string): void {
  must('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(SIZE)]);
  must('qemu-img', ['bitmap', '--add', file, 'b0']);
  must('qemu-img', ['bitmap', '--add', '-g', '512k', '--disable', file, 'b1']);
  qemuIo(file, ['write -P 0x33 0 1M']);
}

interface InfoJson {
  'format-specific': { type: string; data: Record<string, unknown> };
}

describe('bitmap directory codec', () => {
  let t: TempDir;
  beforeAll(() => {
    t = tempDir('bitmap-codec');
  });
  afterAll(() => t.cleanup());

  it('decodes the directory qemu-img wrote and re-encodes it byte for byte', () => {
    const f = t.file('q.qcow2');
    qemuImageWithBitmaps(f);
    const d = directoryOf(f);
    expect(
      d.entries.map((e) => ({ name: e.name, g: e.granularityBits, flags: e.flags, type: e.type })),
    ).toEqual([
      { name: 'b0', g: 16, flags: BME_FLAG_AUTO, type: 1 },
      { name: 'b1', g: 19, flags: 0, type: 1 },
    ]);
    expect(sameBytes(encodeBitmapDirectory(d.entries), d.raw)).toBe('equal');
    expect(bitmapDirectorySize(d.entries)).toBe(d.raw.length);
    validateBitmapDirectory(d.entries, { clusterSize: CS, diskSize: SIZE, directoryOffset: d.offset });
    for (const e of d.entries) {
      expect(e.bitmapTableSize).toBe(bitmapTableEntriesNeeded(SIZE, e.granularityBits, CS));
      const raw = readAt(f, e.bitmapTableOffset, e.bitmapTableSize * 8);
      const table = decodeBitmapTable(raw, e.bitmapTableSize, {
        clusterSize: CS,
        tableOffset: e.bitmapTableOffset,
      });
      expect(sameBytes(encodeBitmapTable(table), raw)).toBe('equal');
    }
    // b0 tracked qemu-io's write: one data cluster.
    const t0 = d.entries[0]!;
    const table0 = decodeBitmapTable(
      readAt(f, t0.bitmapTableOffset, t0.bitmapTableSize * 8),
      t0.bitmapTableSize,
    );
    expect(table0[0]?.kind).toBe('data');
  });

  it('keeps unknown extra data byte for byte, and validation refuses it as QEMU does', () => {
    const e: BitmapDirectoryEntry = {
      ...newBitmapEntry({ name: 'x', granularityBits: 16, bitmapTableOffset: 0x50000, bitmapTableSize: 1 }),
      extraData: Uint8Array.of(1, 2, 3, 4, 5),
    };
    const raw = encodeBitmapDirectory([
      e,
      newBitmapEntry({ name: 'second', granularityBits: 20, bitmapTableOffset: 0x60000, bitmapTableSize: 1 }),
    ]);
    expect(raw.length % 8).toBe(0);
    const back = decodeBitmapDirectory(raw, 2);
    expect(Array.from(back[0]!.extraData)).toEqual([1, 2, 3, 4, 5]);
    expect(back[0]!.name).toBe('x');
    expect(back[1]!.name).toBe('second');
    expect(sameBytes(encodeBitmapDirectory(back), raw)).toBe('equal');
    expect(() => validateBitmapEntry(back[0]!, { clusterSize: CS, diskSize: SIZE })).toThrow(/extra data/);
  });

  it('typed errors for truncated directories and count mismatches, with the host offset', () => {
    const raw = encodeBitmapDirectory([
      newBitmapEntry({ name: 'abc', granularityBits: 16, bitmapTableOffset: 0x50000, bitmapTableSize: 1 }),
    ]);
    const cases: Array<[Uint8Array, number, string]> = [
      [raw.subarray(0, 20), 1, 'BITMAP_DIRECTORY_TRUNCATED'],
      [raw.subarray(0, 26), 1, 'BITMAP_DIRECTORY_TRUNCATED'],
      [raw, 2, 'BITMAP_COUNT_MISMATCH'],
      [raw, 0, 'BITMAP_COUNT_MISMATCH'],
      [new Uint8Array(0), 1, 'BITMAP_DIRECTORY_EMPTY'],
    ];
    for (const [b, n, code] of cases) {
      let err: unknown;
      try {
        decodeBitmapDirectory(b, n, { directoryOffset: 0x70000 });
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(CorruptionError);
      expect((err as CorruptionError).code).toBe(code);
      expect((err as CorruptionError).offset).toBeGreaterThanOrEqual(0x70000);
    }
  });

  it("QEMU's limits: granularity 9..31, name <= 1023 bytes, flags, type, table offset and size", () => {
    const ok = newBitmapEntry({
      name: 'ok',
      granularityBits: 16,
      bitmapTableOffset: 0x50000,
      bitmapTableSize: 1,
    });
    const ctx = { clusterSize: CS, diskSize: 1 << 30, entryOffset: 0x1234 };
    validateBitmapEntry(ok, ctx);
    validateBitmapEntry({ ...ok, flags: BME_FLAG_IN_USE | BME_FLAG_AUTO }, ctx);
    const bad: Array<[Partial<BitmapDirectoryEntry>, string]> = [
      [{ granularityBits: 8 }, 'BITMAP_BAD_GRANULARITY'],
      [{ granularityBits: 32 }, 'BITMAP_BAD_GRANULARITY'],
      [{ nameBytes: new Uint8Array(1024).fill(0x61) }, 'BITMAP_NAME_TOO_LONG'],
      [{ flags: 4 }, 'BITMAP_BAD_FLAGS'],
      [{ type: 2 }, 'BITMAP_BAD_TYPE'],
      [{ bitmapTableOffset: 0x50200 }, 'BITMAP_BAD_TABLE'],
      [{ bitmapTableOffset: 0 }, 'BITMAP_BAD_TABLE'],
      [{ bitmapTableSize: 0 }, 'BITMAP_BAD_TABLE'],
      [{ granularityBits: 9, bitmapTableSize: 1 }, 'BITMAP_TABLE_TOO_SMALL'],
      [{ bitmapTableSize: 0x8000001 }, 'BITMAP_BAD_TABLE'],
      [{ bitmapTableSize: 0x2001 }, 'BITMAP_TOO_LARGE'],
    ];
    for (const [patch, code] of bad) {
      let err: unknown;
      try {
        validateBitmapEntry({ ...ok, ...patch }, ctx);
      } catch (x) {
        err = x;
      }
      expect((err as CorruptionError | undefined)?.code, JSON.stringify(Object.keys(patch))).toBe(code);
      expect((err as CorruptionError).offset).toBe(0x1234);
    }
    // A table too small is fine while the bitmap is in use (QEMU: invalid bitmap after a resize).
    validateBitmapEntry({ ...ok, granularityBits: 9, flags: BME_FLAG_IN_USE }, ctx);
    expect(() =>
      validateBitmapsExtension({ nbBitmaps: 0, bitmapDirectorySize: 0, bitmapDirectoryOffset: 0 }, CS),
    ).toThrow(CorruptionError);
    expect(() =>
      validateBitmapsExtension({ nbBitmaps: 65536, bitmapDirectorySize: 8, bitmapDirectoryOffset: CS }, CS),
    ).toThrow(/65535/);
    expect(() =>
      validateBitmapsExtension(
        { nbBitmaps: 1, bitmapDirectorySize: 1024 * 65535 + 1, bitmapDirectoryOffset: CS },
        CS,
      ),
    ).toThrow(/exceeds/);
    expect(() =>
      validateBitmapsExtension({ nbBitmaps: 1, bitmapDirectorySize: 32, bitmapDirectoryOffset: CS + 8 }, CS),
    ).toThrow(/offset/);
  });

  it('bitmap table entries: offsets, all-ones, reserved bits', () => {
    const b = new Uint8Array(8);
    const entry = (hi: number, lo: number): Uint8Array => {
      const x = new Uint8Array(8);
      new DataView(x.buffer).setUint32(0, hi);
      new DataView(x.buffer).setUint32(4, lo);
      return x;
    };
    expect(decodeBitmapTableEntry(entry(0, 0), 0)).toEqual({ kind: 'unallocated', allOnes: false });
    expect(decodeBitmapTableEntry(entry(0, 1), 0)).toEqual({ kind: 'unallocated', allOnes: true });
    expect(decodeBitmapTableEntry(entry(0x12, 0x34560000), 0, { clusterSize: CS })).toEqual({
      kind: 'data',
      offset: 0x1234560000,
    });
    for (const [hi, lo] of [
      [0x01000000, 0],
      [0, 0x2],
      [0, 0x100],
      [0, 0x10001],
    ] as const) {
      expect(() => decodeBitmapTableEntry(entry(hi, lo), 0, { hostOffset: 0x999 })).toThrow(CorruptionError);
    }
    expect(() => decodeBitmapTableEntry(entry(0, 0x10200), 0, { clusterSize: CS })).toThrow(/aligned/);
    const table = [
      { kind: 'data', offset: 0x30000 },
      { kind: 'unallocated', allOnes: true },
      { kind: 'unallocated', allOnes: false },
    ] as const;
    expect(decodeBitmapTable(encodeBitmapTable(table), 3)).toEqual(table);
    expect(() => decodeBitmapTable(b, 2)).toThrow(CorruptionError);
  });
});

describe('images with bitmaps: engine vs qemu-img', () => {
  let t: TempDir;
  beforeAll(() => {
    t = tempDir('bitmap-engine');
  });
  afterAll(() => t.cleanup());

  it('read-only open, and read-write open without a write, keep the file byte for byte', () => {
    const f = t.file('ro.qcow2');
    qemuImageWithBitmaps(f);
    const before = new Uint8Array(fs.readFileSync(f));
    const dirBefore = directoryOf(f).raw;
    const ro = Qcow2Image.open(f, { readOnly: true });
    try {
      expect(ro.read(0, 4096).every((x) => x === 0x33)).toBe(true);
    } finally {
      ro.close();
    }
    expect(sameBytes(new Uint8Array(fs.readFileSync(f)), before)).toBe('equal');
    const rw = Qcow2Image.open(f, { sync: false });
    try {
      rw.read(0, 65536);
    } finally {
      rw.close();
    }
    expect(sameBytes(directoryOf(f).raw, dirBefore)).toBe('equal');
    expect(headerOf(f).autoclearFeatures & AUTOCLEAR_BITMAPS).toBe(AUTOCLEAR_BITMAPS);
    expect(sameBytes(new Uint8Array(fs.readFileSync(f)), before)).toBe('equal');
    expect(qemuCheck(f).status).toBe(0);
  });

  it('after an engine write qemu treats the bitmaps as inconsistent: ignored, their clusters leaked', async () => {
    const f = t.file('rw.qcow2');
    qemuImageWithBitmaps(f);
    const dirBefore = directoryOf(f).raw;
    const owned = bitmapClusters(f);
    expect(owned).toBe(4); // directory, two tables, one data cluster of b0
    const img = Qcow2Image.open(f, { sync: false });
    try {
      img.write(2 << 20, new Uint8Array(65536).fill(0x44));
    } finally {
      img.close();
    }
    const h = headerOf(f);
    expect(h.autoclearFeatures & AUTOCLEAR_BITMAPS).toBe(0n);
    // The extension and the directory themselves are left as they were.
    expect(sameBytes(directoryOf(f).raw, dirBefore)).toBe('equal');

    const info = run('qemu-img', ['info', '--output=json', f]);
    expect(info.status).toBe(0);
    expect(info.stderr).toContain(
      'a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent',
    );
    const qj = JSON.parse(info.stdout) as InfoJson;
    expect(qj['format-specific'].data.bitmaps).toBeUndefined();
    const ours = await cli(['info', '--output=json', f]);
    expect(ours.code).toBe(0);
    expect((JSON.parse(ours.out) as InfoJson)['format-specific']).toEqual(qj['format-specific']);
    expect(ours.err).toContain('all bitmaps are now considered inconsistent');

    const c = qemuCheck(f);
    expect(c.status).toBe(3);
    expect(c.json?.leaks).toBe(owned);
    expect(c.json?.corruptions).toBeUndefined();
    expect(c.stderr).toContain('considered inconsistent');

    const exp = new Uint8Array(4 << 20);
    exp.fill(0x33, 0, 1 << 20);
    exp.fill(0x44, 2 << 20, (2 << 20) + 65536);
    expect(sameBytes(qemuRaw(f).subarray(0, 4 << 20), exp)).toBe('equal');

    // qemu's repair frees them and drops the extension; then the image is clean and bitmaps can be added again.
    const r = qemuCheck(f, { repair: 'leaks' });
    expect(r.status).toBe(0);
    expect(bitmapsExtension(headerOf(f))).toBeUndefined();
    expect(qemuCheck(f).status).toBe(0);
    must('qemu-img', ['bitmap', '--add', f, 'again']);
    const after = JSON.parse(must('qemu-img', ['info', '--output=json', f])) as InfoJson;
    expect(after['format-specific'].data.bitmaps).toEqual([
      { flags: ['auto'], name: 'again', granularity: 65536 },
    ]);
  });

  it('qcow2 info prints bitmaps exactly as qemu-img info (json and human), in-use flag included', async () => {
    const f = t.file('info.qcow2');
    qemuImageWithBitmaps(f);
    const inUse = t.file('inuse.qcow2');
    fs.copyFileSync(f, inUse);
    // Mark b0 in use (flags word of the first entry), as a crashed QEMU leaves it.
    const d = directoryOf(inUse);
    const fd = fs.openSync(inUse, 'r+');
    try {
      fs.writeSync(fd, Uint8Array.of(0, 0, 0, BME_FLAG_IN_USE | BME_FLAG_AUTO), 0, 4, d.offset + 12);
    } finally {
      fs.closeSync(fd);
    }
    for (const file of [f, inUse]) {
      const theirs = must('qemu-img', ['info', '--output=json', file]);
      const ours = await cli(['info', '--output=json', file]);
      expect(ours.code).toBe(0);
      const oj = JSON.parse(ours.out) as InfoJson;
      const tj = JSON.parse(theirs) as InfoJson;
      expect(oj['format-specific']).toEqual(tj['format-specific']);
      const block = (s: string): string => s.slice(s.indexOf('"format-specific"'), s.indexOf('"dirty-flag"'));
      expect(block(ours.out)).toBe(block(theirs));
      const th = must('qemu-img', ['info', file]);
      const oh = await cli(['info', file]);
      const fsBlock = (s: string): string => s.slice(s.indexOf('Format specific information:'));
      expect(fsBlock(oh.out)).toBe(fsBlock(th));
    }
    const tj = JSON.parse(must('qemu-img', ['info', '--output=json', inUse])) as InfoJson;
    expect((tj['format-specific'].data.bitmaps as Array<{ flags: string[] }>)[0]?.flags).toEqual([
      'in-use',
      'auto',
    ]);
  });

  it('qcow2 info refuses a broken bitmap directory, as qemu-img info does', async () => {
    const f = t.file('broken.qcow2');
    must('qemu-img', ['create', '-q', '-f', 'qcow2', f, String(SIZE)]);
    must('qemu-img', ['bitmap', '--add', f, 'b0']);
    const d = directoryOf(f);
    const fd = fs.openSync(f, 'r+');
    try {
      fs.writeSync(fd, Uint8Array.of(40), 0, 1, d.offset + 17); // granularity_bits 40
    } finally {
      fs.closeSync(fd);
    }
    const q = run('qemu-img', ['info', f]);
    expect(q.status).not.toBe(0);
    const ours = await cli(['info', f]);
    expect(ours.code).toBe(1);
    expect(ours.err).toMatch(/b0.*constraints/);
  });
});
