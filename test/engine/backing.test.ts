/**
 * Backing chains: qcow2 and raw backing files, chains of depth 3 with relative names (resolved
 * from the image's directory, whatever the current directory), fall-through reads, zero clusters
 * over backing data, shorter backing files, copy-on-write from the backing file, v2 vs v3 discard
 * compared with qemu-io doing the same on a copy, loops refused with BACKING_LOOP, and images the
 * engine creates over a backing file read identically by qemu.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { openImage } from '../../src/open.ts';
import { ExpectedDisk, engineMap, normalizeMap, pattern } from './model.ts';
import {
  checkBoth,
  errorCode,
  qemuCheck,
  qemuCreate,
  qemuInfo,
  qemuIo,
  qemuMap,
  qemuRaw,
  run,
  sameBytes,
  tempDir,
} from '../support/qemu.ts';

const tmp = tempDir('backing');
afterAll(() => tmp.cleanup());

const MiB = 1024 * 1024;
const CS = 65536;
/** QEMU runs from the root directory: relative names must resolve from the image's directory. */
const ELSEWHERE = '/';

function newDir(name: string): string {
  const d = tmp.file(name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

function expectSameAsQemu(file: string): void {
  const raw = qemuRaw(file, { cwd: ELSEWHERE });
  const img = Qcow2Image.open(file, { readOnly: true, sync: false });
  try {
    expect(img.size).toBe(raw.length);
    expect(sameBytes(img.read(0, img.size), raw)).toBe('equal');
    expect(engineMap(img)).toEqual(normalizeMap(qemuMap(file, { cwd: ELSEWHERE })));
  } finally {
    img.close();
  }
}

function makeRaw(file: string, size: number, fill: Array<[number, Uint8Array]>): void {
  const b = new Uint8Array(size);
  for (const [o, d] of fill) b.set(d, o);
  fs.writeFileSync(file, b);
}

describe('qemu-made overlays over qcow2 and raw backing files read identically through the engine', () => {
  it.each([['qcow2'], ['raw']] as Array<['qcow2' | 'raw']>)('backing format %s', (fmt) => {
    const dir = newDir(`overlay-${fmt}`);
    const base = path.join(dir, `base.${fmt}`);
    if (fmt === 'raw')
      makeRaw(base, 4 * MiB, [
        [0, pattern(3 * CS, 1)],
        [10 * CS, pattern(CS, 2)],
      ]);
    else {
      qemuCreate(base, 4 * MiB, { opts: `cluster_size=${CS}` });
      qemuIo(base, [
        `write -P 0x61 0 ${3 * CS}`,
        `write -P 0x62 ${10 * CS} ${CS}`,
        `write -c -P 0x63 ${12 * CS} ${CS}`,
      ]);
    }
    const top = path.join(dir, 'top.qcow2');
    qemuCreate('top.qcow2', 4 * MiB, { backing: `base.${fmt}`, backingFormat: fmt, cwd: dir });
    qemuIo(
      top,
      [
        `write -P 0x71 ${CS + 100} 300`, // partial write into an unallocated cluster: the rest from the backing file
        `write -z ${2 * CS} ${CS}`, // zero flag over backing data
        `write -P 0x72 ${10 * CS + CS / 2} ${CS}`, // crossing, half over backing data
      ],
      { cwd: ELSEWHERE },
    );
    expect(qemuInfo(top).backingFilename).toBe(`base.${fmt}`);
    expectSameAsQemu(top);
    // the engine's own view of the same facts
    const img = Qcow2Image.open(top, { readOnly: true, sync: false });
    try {
      const baseBytes = qemuRaw(base, { format: fmt });
      expect(sameBytes(img.read(0, CS), baseBytes.subarray(0, CS))).toBe('equal'); // falls through
      expect(img.read(2 * CS, CS).every((b) => b === 0)).toBe(true); // zero flag wins
      const cow = img.read(CS, CS);
      expect(sameBytes(cow.subarray(0, 100), baseBytes.subarray(CS, CS + 100))).toBe('equal');
      expect(sameBytes(cow.subarray(400), baseBytes.subarray(CS + 400, 2 * CS))).toBe('equal');
    } finally {
      img.close();
    }
  });

  it('a chain of depth 3 (raw <- qcow2 <- qcow2) with shorter backing files and relative names', () => {
    const dir = newDir('chain3');
    makeRaw(path.join(dir, 'base.raw'), 1 * MiB, [[0, pattern(MiB, 3)]]);
    qemuCreate('mid.qcow2', 2 * MiB, {
      backing: 'base.raw',
      backingFormat: 'raw',
      cwd: dir,
      opts: 'cluster_size=4096',
    });
    qemuIo(path.join(dir, 'mid.qcow2'), [
      `write -P 0x81 ${MiB - 2048} 8192`,
      'write -z 0 4096',
      `write -P 0x82 ${1.5 * MiB} 4096`,
    ]);
    qemuCreate('top.qcow2', 4 * MiB, {
      backing: 'mid.qcow2',
      backingFormat: 'qcow2',
      cwd: dir,
      opts: 'cluster_size=65536',
    });
    qemuIo(path.join(dir, 'top.qcow2'), [`write -P 0x91 ${CS + 7} 1000`, `write -P 0x92 ${3 * MiB} 4096`]);
    const top = path.join(dir, 'top.qcow2');
    expectSameAsQemu(top);
    const img = Qcow2Image.open(top, { readOnly: true, sync: false });
    try {
      // beyond the end of the 2 MiB middle layer (and the 1 MiB base): zeros
      expect(img.read(2 * MiB, MiB).every((b) => b === 0)).toBe(true);
      expect(img.read(MiB + 8192, 4096).every((b) => b === 0)).toBe(true);
    } finally {
      img.close();
    }
    // the same chain opened through openImage (format probing), from the image's name only
    const disk = openImage(top, { readOnly: true, sync: false });
    try {
      expect(sameBytes(disk.read(0, disk.size), qemuRaw(top, { cwd: ELSEWHERE }))).toBe('equal');
    } finally {
      disk.close();
    }
  });

  it('a backing file shorter than the overlay reads zeros beyond its end (map too)', () => {
    const dir = newDir('short');
    qemuCreate(path.join(dir, 'base.qcow2'), 1 * MiB, { opts: 'cluster_size=65536' });
    qemuIo(path.join(dir, 'base.qcow2'), [`write -P 0x44 0 ${MiB}`]);
    qemuCreate('top.qcow2', 4 * MiB, { backing: 'base.qcow2', backingFormat: 'qcow2', cwd: dir });
    expectSameAsQemu(path.join(dir, 'top.qcow2'));
  });
});

// qemu 7.2 refuses (ENOTSUP, silently) a discard on a v2 image that has a backing file: freeing the
// clusters would expose the backing file, and v2 has no zero flag. So there the data stays.
describe('discard over a backing file: v3 reads zeros, v2 keeps the data (same as qemu-io)', () => {
  it.each([['0.10'], ['1.1']] as Array<['0.10' | '1.1']>)('compat %s', (compat) => {
    const dir = newDir(`discard-${compat}`);
    const base = path.join(dir, 'base.qcow2');
    qemuCreate(base, 2 * MiB, { opts: `cluster_size=${CS}` });
    qemuIo(base, [`write -P 0x55 0 ${2 * MiB}`]);
    qemuCreate('a.qcow2', 2 * MiB, {
      backing: 'base.qcow2',
      backingFormat: 'qcow2',
      cwd: dir,
      opts: `cluster_size=${CS},compat=${compat}`,
    });
    fs.copyFileSync(path.join(dir, 'a.qcow2'), path.join(dir, 'b.qcow2'));
    const byEngine = path.join(dir, 'a.qcow2');
    const byQemu = path.join(dir, 'b.qcow2');
    qemuIo(byQemu, [
      `write -P 0x66 0 ${8 * CS}`,
      `discard ${CS} ${2 * CS}`,
      `discard ${4 * CS + 512} ${CS}`, // partial: nothing happens
      `discard ${10 * CS} ${CS}`, // over nothing allocated in the overlay
      `write -z -u ${6 * CS} ${CS}`,
      `write -z ${7 * CS + 100} 200`,
    ]);
    const img = Qcow2Image.open(byEngine, { sync: false });
    try {
      img.write(0, new Uint8Array(8 * CS).fill(0x66));
      img.discard(CS, 2 * CS);
      img.discard(4 * CS + 512, CS);
      img.discard(10 * CS, CS);
      img.writeZeroes(6 * CS, CS, { unmap: true });
      img.writeZeroes(7 * CS + 100, 200);
      const discarded = img.read(CS, CS);
      if (compat === '0.10') expect(discarded.every((b) => b === 0x66)).toBe(true);
      else expect(discarded.every((b) => b === 0)).toBe(true);
    } finally {
      img.close();
    }
    expect(sameBytes(qemuRaw(byEngine), qemuRaw(byQemu))).toBe('equal');
    const c = checkBoth(byEngine);
    expect(c.qemu).toBe(0);
    expect(c.engine).toBe(0);
  });
});

describe('backing chains that loop are refused at once', () => {
  it('an image whose backing file is itself', () => {
    const dir = newDir('loop1');
    const a = path.join(dir, 'a.qcow2');
    qemuCreate(a, 1 * MiB);
    expect(
      run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', a], {
        timeoutMs: 20_000,
      }).status,
    ).toBe(0);
    expect(errorCode(() => Qcow2Image.open(a, { readOnly: true, sync: false }).close())).toBe('BACKING_LOOP');
    expect(errorCode(() => openImage(a, { readOnly: true, sync: false }).close())).toBe('BACKING_LOOP');
    expect(errorCode(() => Qcow2Image.open(a, { sync: false }).close())).toBe('BACKING_LOOP');
  });

  it('A -> B -> A', () => {
    const dir = newDir('loop2');
    const a = path.join(dir, 'a.qcow2');
    const b = path.join(dir, 'b.qcow2');
    qemuCreate(a, 1 * MiB);
    qemuCreate(b, 1 * MiB);
    expect(
      run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', a], {
        timeoutMs: 20_000,
      }).status,
    ).toBe(0);
    expect(
      run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', b], {
        timeoutMs: 20_000,
      }).status,
    ).toBe(0);
    expect(errorCode(() => Qcow2Image.open(a, { readOnly: true, sync: false }).close())).toBe('BACKING_LOOP');
    expect(errorCode(() => Qcow2Image.open(b, { sync: false }).close())).toBe('BACKING_LOOP');
    expect(errorCode(() => openImage(b, { readOnly: true, sync: false }).close())).toBe('BACKING_LOOP');
    // without opening the chain, the image itself opens
    const alone = Qcow2Image.open(a, { readOnly: true, sync: false, openBacking: false });
    expect(alone.header.backingFile).toBe('b.qcow2');
    alone.close();
  });
});

describe('images the engine creates over a backing file are read identically by qemu', () => {
  it.each([
    ['qcow2', '1.1'],
    ['raw', '1.1'],
    ['qcow2', '0.10'],
  ] as Array<['qcow2' | 'raw', '0.10' | '1.1']>)('backing %s, compat %s', (fmt, compat) => {
    const dir = newDir(`engine-${fmt}-${compat}`);
    const base = path.join(dir, `base.${fmt}`);
    const baseData = pattern(3 * MiB, 4);
    if (fmt === 'raw') makeRaw(base, 3 * MiB, [[0, baseData]]);
    else {
      qemuCreate(base, 3 * MiB, { opts: 'cluster_size=4096' });
      fs.writeFileSync(path.join(dir, 'seed.raw'), baseData);
      const r = run('qemu-img', [
        'convert',
        '-n',
        '-f',
        'raw',
        '-O',
        'qcow2',
        path.join(dir, 'seed.raw'),
        base,
      ]);
      expect(r.status).toBe(0);
    }
    const top = path.join(dir, 'top.qcow2');
    const model = new ExpectedDisk(4 * MiB);
    model.write(0, baseData);
    const img = Qcow2Image.create(top, {
      size: 4 * MiB,
      compat,
      backingFile: `base.${fmt}`,
      backingFormat: fmt,
      sync: false,
    });
    try {
      expect(sameBytes(img.read(0, img.size), model.bytes)).toBe('equal');
      const d = pattern(300, 5);
      img.write(CS + 100, d); // copy-on-write from the backing file
      model.write(CS + 100, d);
      img.writeZeroes(3 * CS, CS);
      model.zero(3 * CS, CS);
      const e = pattern(CS, 6);
      img.write(3 * MiB - CS / 2, e); // across the end of the backing file
      model.write(3 * MiB - CS / 2, e);
      img.write(5 * CS, pattern(2 * CS, 7));
      model.write(5 * CS, pattern(2 * CS, 7));
      img.discard(5 * CS, 2 * CS);
      if (compat === '1.1') model.discard(5 * CS, 2 * CS, CS); // v2 with a backing file: qemu does nothing
      expect(sameBytes(img.read(0, img.size), model.bytes)).toBe('equal');
    } finally {
      img.close();
    }
    expect(qemuInfo(top).backingFilename).toBe(`base.${fmt}`);
    expect(qemuCheck(top).status).toBe(0);
    expect(sameBytes(qemuRaw(top, { cwd: ELSEWHERE }), model.bytes)).toBe('equal');
    expectSameAsQemu(top);
  });
});
