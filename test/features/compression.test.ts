/**
 * Compressed clusters, zlib and zstd, both directions: qemu-io `write -c` read by the engine;
 * engine `writeCompressed` read by `qemu-img convert` and checked by `qemu-img check`; a compressed
 * write over an allocated cluster; a partial write into a compressed cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../src/image.ts';
import {
  compressible,
  pattern,
  qemuCheck,
  qemuIo,
  qemuMap,
  qemuRaw,
  sameBytes,
  tempDir,
  must,
  type TempDir,
} from '../support/qemu.ts';

const CS = 65536;
const SIZE = 1 << 20;

for (const ct of ['zlib', 'zstd'] as const) {
  describe(`compressed clusters (${ct})`, () => {
    let t: TempDir;
    beforeAll(() => {
      t = tempDir(`compress-${ct}`);
    });
    afterAll(() => t.cleanup());

    it('qemu-io write -c is read by the engine, and qemu-img convert agrees', () => {
      const f = t.file('q.qcow2');
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `compression_type=${ct}`, f, String(SIZE)]);
      // pattern-filled clusters compress; a last partial cluster (end of disk) too.
      qemuIo(f, ['write -c -P 0x61 0 64k', 'write -c -P 0x62 128k 128k', 'write -P 0x63 320k 4k']);
      const expected = new Uint8Array(SIZE);
      expected.fill(0x61, 0, CS);
      expected.fill(0x62, 2 * CS, 4 * CS);
      expected.fill(0x63, 5 * CS, 5 * CS + 4096);
      const img = Qcow2Image.open(f, { readOnly: true });
      try {
        expect(img.header.compressionType).toBe(ct === 'zstd' ? 1 : 0);
        expect(sameBytes(img.read(0, SIZE), expected)).toBe('equal');
        const s = img.blockStatus(0, CS);
        expect(s.compressed).toBe(true);
        expect(s.data).toBe(true);
      } finally {
        img.close();
      }
      expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
    });

    it('engine writeCompressed is read by qemu-img convert; check is clean', () => {
      const f = t.file('e.qcow2');
      const img = Qcow2Image.create(f, { size: SIZE, compressionType: ct, sync: false });
      const a = compressible(2 * CS, 1);
      const b = pattern(CS, 2); // incompressible: stored uncompressed
      try {
        img.writeCompressed(0, a);
        img.writeCompressed(4 * CS, b);
        img.writeCompressed(SIZE - CS, compressible(CS, 3));
      } finally {
        img.close();
      }
      const expected = new Uint8Array(SIZE);
      expected.set(a, 0);
      expected.set(b, 4 * CS);
      expected.set(compressible(CS, 3), SIZE - CS);
      expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
      const c = qemuCheck(f);
      expect(c.stderr).toBe('');
      expect(c.status).toBe(0);
      expect(c.json?.['compressed-clusters']).toBe(3);
      // qemu sees compressed data at 0 and SIZE-CS, plain data at 4 clusters.
      const map = qemuMap(f);
      expect(map.find((e) => e.start === 0)).toMatchObject({ data: true, present: true });
      expect(map.find((e) => e.start === 0)?.offset).toBeUndefined();
      expect(map.find((e) => e.start === 4 * CS)?.offset).toBeDefined();
      const h = must('qemu-img', ['info', '--output=json', f]);
      expect(
        (JSON.parse(h) as { 'format-specific': { data: { 'compression-type': string } } })['format-specific']
          .data['compression-type'],
      ).toBe(ct);
    });

    it('a compressed write over an allocated cluster: refused, or correct and leak-free', () => {
      const f = t.file('over.qcow2');
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `compression_type=${ct}`, f, String(SIZE)]);
      qemuIo(f, ['write -P 0x11 0 128k']);
      // QEMU 7.2 itself refuses this (EIO); the engine may refuse too, but must not corrupt.
      const img = Qcow2Image.open(f, { sync: false });
      const data = compressible(CS, 4);
      let refused = false;
      try {
        img.writeCompressed(CS, data);
      } catch {
        refused = true;
      } finally {
        img.close();
      }
      const expected = new Uint8Array(SIZE);
      expected.fill(0x11, 0, 2 * CS);
      if (!refused) expected.set(data, CS);
      expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
      const c = qemuCheck(f);
      expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
    });

    it('a partial write into a compressed cluster (qemu-written and engine-written)', () => {
      const f = t.file('partial.qcow2');
      must('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `compression_type=${ct}`, f, String(SIZE)]);
      qemuIo(f, ['write -c -P 0x21 0 64k', 'write -c -P 0x22 64k 64k']);
      const img = Qcow2Image.open(f, { sync: false });
      const e1 = Qcow2Image.create(t.file('partial-e.qcow2'), {
        size: SIZE,
        compressionType: ct,
        sync: false,
      });
      try {
        img.write(4096, pattern(8192, 5));
        e1.writeCompressed(0, compressible(2 * CS, 6));
        e1.write(CS + 512, pattern(1000, 7));
      } finally {
        img.close();
        e1.close();
      }
      const expected = new Uint8Array(SIZE);
      expected.fill(0x21, 0, CS);
      expected.fill(0x22, CS, 2 * CS);
      expected.set(pattern(8192, 5), 4096);
      expect(sameBytes(qemuRaw(f), expected)).toBe('equal');
      expect(qemuCheck(f).status).toBe(0);

      const exp2 = new Uint8Array(SIZE);
      exp2.set(compressible(2 * CS, 6), 0);
      exp2.set(pattern(1000, 7), CS + 512);
      expect(sameBytes(qemuRaw(t.file('partial-e.qcow2')), exp2)).toBe('equal');
      const c = qemuCheck(t.file('partial-e.qcow2'));
      expect({ status: c.status, stderr: c.stderr }).toEqual({ status: 0, stderr: '' });
    });

    it('qemu-img convert -c output is read by the engine', () => {
      const src = t.file('plain.qcow2');
      must('qemu-img', ['create', '-q', '-f', 'qcow2', src, String(SIZE)]);
      qemuIo(src, ['write -P 0x31 0 192k', 'write -P 0x32 512k 64k']);
      const dst = t.file('conv.qcow2');
      must('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', `compression_type=${ct}`, src, dst]);
      const img = Qcow2Image.open(dst, { readOnly: true });
      try {
        expect(sameBytes(img.read(0, SIZE), qemuRaw(src))).toBe('equal');
      } finally {
        img.close();
      }
    });
  });
}
