/**
 * The corrupt bit (incompatible bit 1): corruption met while the image is writable marks the
 * image corrupt and stops writes (QEMU's qcow2_signal_corruption); a marked image opens read-only
 * only; an allocation that would land on live metadata is refused as corruption.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { errorCode as codeOf, must, qemuCreate, qemuIo, tempDir } from '../support/qemu.ts';

const tmp = tempDir('corrupt');
const dir = tmp.dir;
afterAll(() => tmp.cleanup());

describe('corrupt bit', () => {
  it('an unaligned L2 entry met by a write marks the image corrupt and stops writes', () => {
    const f = path.join(dir, 'l2.qcow2');
    qemuCreate(f, '4M');
    qemuIo(f, ['write -P 1 0 128k']);
    const bytes = fs.readFileSync(f);
    // L2 table at 0x40000 (fresh 64 KiB layout); entry 1's low word: data at 0x60000 + 0x200.
    expect(bytes.readUInt32BE(0x40000 + 12)).toBe(0x60000);
    bytes.writeUInt32BE(0x60200, 0x40000 + 12);
    fs.writeFileSync(f, bytes);

    const img = Qcow2Image.open(f, { sync: false });
    expect(codeOf(() => img.write(65536 + 10, new Uint8Array(5)))).toBe('CORRUPT_L2');
    expect(codeOf(() => img.write(0, new Uint8Array(5)))).toBe('IMAGE_CORRUPT');
    img.close();

    const info = JSON.parse(must('qemu-img', ['info', '--output=json', f])) as {
      'format-specific': { data: { corrupt: boolean } };
    };
    expect(info['format-specific'].data.corrupt).toBe(true);
    expect(codeOf(() => Qcow2Image.open(f))).toBe('IMAGE_CORRUPT');
    const ro = Qcow2Image.open(f, { readOnly: true });
    expect(ro.read(0, 4)).toEqual(new Uint8Array([1, 1, 1, 1]));
    ro.close();
  });

  it('a refcount of 0 on the L1 table is caught before an allocation overwrites it', () => {
    const f = path.join(dir, 'overlap.qcow2');
    qemuCreate(f, '4M');
    const bytes = fs.readFileSync(f);
    // Refcount block at 0x20000, 16-bit entries: cluster 3 is the L1 table.
    expect(bytes.readUInt16BE(0x20000 + 3 * 2)).toBe(1);
    bytes.writeUInt16BE(0, 0x20000 + 3 * 2);
    fs.writeFileSync(f, bytes);
    const before = fs.readFileSync(f);

    const img = Qcow2Image.open(f, { sync: false });
    expect(codeOf(() => img.write(0, new Uint8Array(4096).fill(7)))).toBe('REFCOUNT_OVERLAP');
    img.close();
    const after = fs.readFileSync(f);
    // Only the header changed (the corrupt bit); the L1 table is intact.
    expect(after.subarray(0x30000, 0x40000)).toEqual(before.subarray(0x30000, 0x40000));
    expect(after.readUInt32BE(72 + 4) & 2).toBe(2);
  });
});
