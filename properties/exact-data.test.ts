/**
 * Exact data: stamped writes, exact read comparisons, and mismatches explained in words. A
 * plain in-memory "implementation" with planted defects (a sector written to the wrong place, a
 * dropped overwrite, a dropped write) must be reported as misplaced, stale and lost; a case with
 * stamped writes must become a bash script that qemu-img/qemu-io alone run clean.
 */
import { execaSync } from 'execa';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ImageHandle, ReadMismatch } from './adapters/adapter.ts';
import { DiskModel, NO_QUIRKS } from './model/disk-model.ts';
import { originOf, stampBytes, stampScriptFunction } from './model/stamp.ts';
import { firstDifference } from './model/compare-bytes.ts';
import { checkRead } from './oracles/read-oracle.ts';
import { Divergence } from './runner/divergence.ts';
import { writeData, type WriteSource, type WriteStep } from './steps.ts';
import { plainLayout } from './layout.ts';
import { buildCase } from './cases/case-file.ts';
import { replayCase } from './cases/replay.ts';
import { requireQemuTools } from './qemu/qemu-img.ts';

const LAYOUT = plainLayout();

/** A flat byte array as an image; `plant` may change where and whether a write lands. */
class MemoryHandle implements ImageHandle {
  readonly path = 'memory';
  readonly isOpen = true;
  readonly bytes: Uint8Array;
  constructor(
    size: number,
    private readonly plant: (
      offset: number,
      data: Uint8Array,
      source: WriteSource,
      bytes: Uint8Array,
    ) => boolean,
  ) {
    this.bytes = new Uint8Array(size);
  }
  async open(): Promise<void> {}
  async close(): Promise<void> {}
  async dispose(): Promise<void> {}
  async write(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    if (this.plant(offset, data, source, this.bytes)) this.bytes.set(data, offset);
  }
  async writeCompressed(offset: number, data: Uint8Array, source: WriteSource): Promise<void> {
    await this.write(offset, data, source);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.bytes.fill(0, offset, offset + length);
  }
  async discard(): Promise<void> {}
  async verify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined> {
    const got = this.bytes.slice(offset, offset + expected.length);
    const at = firstDifference(got, expected);
    return at < 0 ? undefined : { offset: offset + at, observed: got, observedAt: offset };
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    return this.bytes.slice(offset, offset + length);
  }
  async flush(): Promise<void> {}
  async resize(): Promise<void> {}
  async snapshotCreate(): Promise<void> {}
  async snapshotApply(): Promise<void> {}
  async snapshotDelete(): Promise<void> {}
}

async function words(handle: ImageHandle, model: DiskModel, offset: number, length: number): Promise<string> {
  try {
    await checkRead(handle, model, offset, length, { kind: 'read-mismatch', stepIndex: 0, step: 'read' });
  } catch (e) {
    if (e instanceof Divergence) return `${e.details.category}: ${String(e.details.observed)}`;
    throw e;
  }
  return 'no mismatch';
}

async function writeBoth(model: DiskModel, handle: ImageHandle, step: WriteStep): Promise<void> {
  model.write(step);
  await handle.write(step.offset, writeData(step), step);
}

describe('stamped data', () => {
  it('stamps every sector with its write number and guest offset, and decodes it back', () => {
    const bytes = stampBytes(17, 0x30200, 1300);
    expect(bytes.length).toBe(1300);
    expect(Buffer.from(bytes.subarray(0, 24)).toString('latin1')).toBe('#w00000011@000000030200:');
    expect(originOf(bytes, 700)).toEqual({ id: 17, source: 0x30200 + 700, header: 512 });
    expect(stampBytes(17, 0x30200, 1300)).toEqual(bytes);
    expect(stampBytes(18, 0x30200, 1300)).not.toEqual(bytes);
  });

  it('makes the same bytes in bash (the reproduction scripts)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stamp-'));
    try {
      const file = path.join(dir, 'w.bin');
      execaSync('bash', ['-c', `${stampScriptFunction()}\nstamp 123 66047 1777 ${file}`]);
      expect(Buffer.compare(fs.readFileSync(file), Buffer.from(stampBytes(123, 66047, 1777)))).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('read mismatches in words', () => {
  it('reports a misplaced sector, a stale sector and a lost write', async () => {
    const model = new DiskModel(LAYOUT, NO_QUIRKS);
    // write #2's second sector also lands 0x20000 lower (over write #1's); write #4 never lands
    // (write #3's data stays); write #5 is dropped
    const handle = new MemoryHandle(LAYOUT.size, (offset, data, source, bytes) => {
      if (source.stamp === 2) bytes.set(data.subarray(512, 1024), offset + 512 - 0x20000);
      return source.stamp !== 4 && source.stamp !== 5;
    });
    await writeBoth(model, handle, { kind: 'write', offset: 0x10000, length: 0x1000, stamp: 1 });
    await writeBoth(model, handle, { kind: 'write', offset: 0x30000, length: 0x1000, stamp: 2 });
    await writeBoth(model, handle, { kind: 'write', offset: 0x50000, length: 0x1000, stamp: 3 });
    await writeBoth(model, handle, { kind: 'write', offset: 0x50000, length: 0x200, stamp: 4 });
    await writeBoth(model, handle, { kind: 'write', offset: 0x70000, length: 0x400, stamp: 5 });
    // the same pattern elsewhere: a pattern write cannot tell places apart, a stamped one can
    expect(await words(handle, model, 0x30000, 0x1000)).toBe('no mismatch');
    expect(await words(handle, model, 0x10000, 0x1000)).toMatch(
      /^misplaced: guest 0x10200 holds write #2's sector for guest 0x30200 \(misplaced by -0x20000; write #1's data expected; \d+ of the 512 bytes from there differ\)$/,
    );
    expect(await words(handle, model, 0x50000, 0x1000)).toMatch(
      /^stale: guest 0x50000 holds write #3's data, overwritten by write #4 \(stale; \d+ of the 512 bytes from there differ\)$/,
    );
    expect(await words(handle, model, 0x6ff00, 0x1000)).toBe(
      "lost: guest 0x70000 reads zeros where write #5's data was (lost; 512 of the 512 bytes from there differ)",
    );
  });

  it('reports bytes no write produced', async () => {
    const model = new DiskModel(LAYOUT, NO_QUIRKS);
    const handle = new MemoryHandle(LAYOUT.size, () => true);
    await writeBoth(model, handle, { kind: 'write', offset: 0, length: 4096, pattern: 0x5a });
    handle.bytes.fill(0xee, 1000, 1100);
    expect(await words(handle, model, 0, 4096)).toMatch(
      /^never-written: guest 0x3e8 holds bytes never written anywhere \(ee ee/,
    );
  });
});

describe('reproduction scripts with stamped writes', () => {
  it('run clean with qemu-img and qemu-io alone when qemu-io matches the model', async () => {
    await requireQemuTools();
    const file = buildCase({
      comment: 'exact-data test',
      impl: 'qemu-io',
      layout: LAYOUT,
      steps: [
        'write -s w1.bin 1000 70000',
        'write -P 0x33 4096 512',
        'snapshot -c s1',
        'write -c -s w2.bin 196608 65536',
        'discard 0 65536',
        'read 0 131072',
        "qemu-io -c 'write -s w3.bin 300000 3000' -c 'write -z 300100 10'",
        'check',
        'check -r leaks',
        'snapshot -a s1',
        'check -r all',
        'convert -c',
        'write -s w4.bin 70000 5000',
        'convert',
        'read 0 80000',
      ],
      seed: null,
      path: null,
      replayPath: null,
      failure: { kind: 'harness', stepIndex: 0, step: 'none', expected: '', observed: '', message: 'none' },
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'script-'));
    try {
      const script = path.join(dir, 'case.sh');
      fs.writeFileSync(script, file.script);
      const r = execaSync('bash', [script], { reject: false, all: true });
      expect(r.exitCode, r.all).toBe(0);
      // and the harness replays the same steps against qemu-io without a failure
      const outcome = await replayCase(file);
      expect(outcome.passed, outcome.divergence?.message).toBe(true);
      // and the script notices a difference: ten bytes changed behind the model's back
      fs.writeFileSync(
        script,
        file.script.replace(
          '# oracles:',
          `qemu-io -f qcow2 -c 'write -P 0x77 2000 10' "$img" >/dev/null\n# oracles:`,
        ),
      );
      const broken = execaSync('bash', [script], { reject: false, all: true });
      expect(broken.exitCode, broken.all).toBe(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('engine reproduction scripts with stamped writes', () => {
  // Engine steps run through `npx qcow2 io -c 'write -s wN.bin …'`: the CLI must write the stamp
  // file (it once wrote qemu-io's default 0xcd, so every engine case script "reproduced" lost data;
  // corpus/engine-stamped-write-reads-source-file.json).
  it('run clean through the built CLI when the engine matches the model', async () => {
    await requireQemuTools();
    const file = buildCase({
      comment: 'exact-data test (engine script)',
      impl: 'engine',
      layout: LAYOUT,
      steps: ['write -s w1.bin 1000 70000', 'close', 'write -s w2.bin 69000 5000', 'read 0 80000'],
      seed: null,
      path: null,
      replayPath: null,
      failure: { kind: 'harness', stepIndex: 0, step: 'none', expected: '', observed: '', message: 'none' },
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'script-'));
    try {
      const script = path.join(dir, 'case.sh');
      fs.writeFileSync(script, file.script);
      const root = new URL('../', import.meta.url).pathname;
      const r = execaSync('bash', [script], { reject: false, all: true, cwd: root });
      expect(r.exitCode, r.all).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
