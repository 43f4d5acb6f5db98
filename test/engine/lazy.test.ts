/**
 * Lazy refcounts (compatible bit 0): the engine sets the dirty bit (incompatible bit 0) before its
 * first change and clears it on a clean close; an image left dirty (the process "crashed") is
 * repaired by the next read-write open, and reads as written.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import { must, qemuCheck, qemuRaw, tempDir } from '../support/qemu.ts';

const tmp = tempDir('lazy');
afterAll(() => tmp.cleanup());

const dirtyFlag = (f: string): boolean =>
  // -U: the image may be open (and so locked) in this process, as it would be by a VM.
  (JSON.parse(must('qemu-img', ['info', '-U', '--output=json', f])) as { 'dirty-flag': boolean })[
    'dirty-flag'
  ];

describe('lazy refcounts', () => {
  it('dirty while open, clean after close', () => {
    const f = tmp.file('clean.qcow2');
    const img = Qcow2Image.create(f, { size: 4 << 20, lazyRefcounts: true, sync: false });
    expect(dirtyFlag(f)).toBe(false);
    img.write(1000, new Uint8Array(200_000).fill(3));
    expect(dirtyFlag(f)).toBe(true);
    img.close();
    expect(dirtyFlag(f)).toBe(false);
    expect(qemuCheck(f).status).toBe(0);
  });

  it('an image abandoned while dirty is repaired by the next read-write open', () => {
    const f = tmp.file('crash.qcow2');
    const img = Qcow2Image.create(f, { size: 4 << 20, lazyRefcounts: true, sync: false });
    img.write(0, new Uint8Array(300_000).fill(9));
    img.flush();
    // No close: the process "dies" here, and with it its file descriptor (and QEMU's image
    // locks on it, src/io/lock.ts): the device goes, the image is never closed. Drop the refcount blocks' updates to make it worse: the
    // on-disk refcounts of the data clusters go back to zero.
    img.device.close();
    const bytes = fs.readFileSync(f);
    bytes.fill(0, 0x20000 + 4 * 2, 0x20000 + 64 * 2);
    fs.writeFileSync(f, bytes);
    expect(dirtyFlag(f)).toBe(true);
    expect(qemuCheck(f).status).toBe(2);

    const reopened = Qcow2Image.open(f, { sync: false });
    expect(reopened.read(0, 300_000).every((b) => b === 9)).toBe(true);
    reopened.close();
    expect(dirtyFlag(f)).toBe(false);
    expect(qemuCheck(f).status).toBe(0);
    expect(
      qemuRaw(f)
        .subarray(0, 300_000)
        .every((b) => b === 9),
    ).toBe(true);
  });
});
