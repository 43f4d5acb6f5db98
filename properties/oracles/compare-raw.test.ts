/**
 * compareRawFile (the convert oracle's comparison): equal files pass, the first differing byte is
 * reported at its offset, bytes past the model must be zero, and the buffers it reuses from call to
 * call never leak a previous file's bytes into the next comparison (a shorter file reads as zeros).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ReferenceDisk } from '../model/reference-disk.ts';
import { compareRawFile } from './compare-raw.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qcow2-compare-raw-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const MiB = 1 << 20;

function file(name: string, bytes: Uint8Array): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes);
  return f;
}

describe('compareRawFile', () => {
  const disk = new ReferenceDisk(3 * MiB);
  const data = new Uint8Array(3 * MiB);
  for (let i = 0; i < data.length; i += 4096) data[i] = (i >> 12) & 0xff || 1;
  disk.write(0, data.subarray(0, 2 * MiB + 100));
  const expected = data.slice();
  expected.fill(0, 2 * MiB + 100);

  it('passes an equal file, in pieces across the 1 MiB boundaries', () => {
    expect(compareRawFile(file('equal.raw', expected), disk)).toBeUndefined();
  });

  it('reports the first differing byte at its offset', () => {
    const bad = expected.slice();
    bad[MiB + 4097] = 0x5a;
    bad[2 * MiB + 3] ^= 0xff;
    const m = compareRawFile(file('bad.raw', bad), disk);
    expect(m?.offset).toBe(MiB + 4097);
    expect(m?.observed.startsWith('5a')).toBe(true);
  });

  it('reads a file shorter than the disk as zeros there, whatever the previous call read', () => {
    // first a file of 0xff everywhere (fills the reused buffers), then a short file (0xff up to
    // just past 1 MiB) whose missing tail the model holds as zeros: equal
    const ones = new Uint8Array(3 * MiB).fill(0xff);
    expect(compareRawFile(file('ones.raw', ones), disk)).toBeDefined();
    const shortDisk = new ReferenceDisk(3 * MiB);
    const head = new Uint8Array(MiB + 512).fill(0xff);
    shortDisk.write(0, head);
    expect(compareRawFile(file('short.raw', head), shortDisk)).toBeUndefined();
  });

  it('wants zeros past the compared length', () => {
    const longer = new Uint8Array(3 * MiB);
    longer.set(expected);
    longer[3 * MiB - 1] = 7;
    const m = compareRawFile(file('tail.raw', longer), disk);
    expect(m?.offset).toBe(3 * MiB - 1);
  });
});
