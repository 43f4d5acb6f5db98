import { inflateRawSync } from 'node:zlib';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { codecFor, scanFrame, type ClusterCodec } from '../../src/codecs/index.ts';
import { libzRawDeflater } from '../../src/codecs/libz.ts';
import { ZLIB_LEVEL, ZLIB_MEM_LEVEL, ZLIB_WINDOW_BITS, pakoCompress } from '../../src/codecs/zlib.ts';
import { CorruptionError, Qcow2Error } from '../../src/errors.ts';
import {
  compressedDescriptor,
  compressedEntry,
  firstDifference,
  randomBytes,
  readImage,
  run,
  sampleCluster,
  setBe64,
  tempDir,
} from './qemu-image.ts';

const tmp = tempDir('codecs');
afterAll(() => tmp.cleanup());

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(firstDifference(actual, expected), 'first differing byte').toBeUndefined();
}

function expectCode(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(Qcow2Error);
  expect((caught as Qcow2Error).code).toBe(code);
}

const types = [
  { name: 'zlib', type: 0 },
  { name: 'zstd', type: 1 },
] as const;

describe.each(types)('$name codec (pure)', ({ name, type }) => {
  const codec: ClusterCodec = codecFor(type);

  it('reports its type', () => {
    expect(codec.type).toBe(name);
  });

  it.each([512, 4096, 65536, 2 * 1024 * 1024])('round-trips a %i-byte cluster', (size) => {
    for (const data of [sampleCluster(size, size), new Uint8Array(size), new Uint8Array(size).fill(0x5a)]) {
      const c = codec.compress(data);
      expect(c).toBeDefined();
      expect(c!.length).toBeLessThanOrEqual(size - 1);
      expectBytes(codec.decompress(c!, size), data);
    }
  });

  it('refuses to compress incompressible data (output must fit cluster_size - 1)', () => {
    expect(codec.compress(randomBytes(65536))).toBeUndefined();
    expect(codec.compress(randomBytes(512))).toBeUndefined();
  });

  it('ignores trailing bytes after the stream (descriptor lengths round up to sectors)', () => {
    const data = sampleCluster(65536, 3);
    const c = codec.compress(data)!;
    const padded = new Uint8Array(Math.ceil(c.length / 512) * 512 + 512);
    padded.set(c);
    padded.set(randomBytes(padded.length - c.length, 9), c.length);
    expectBytes(codec.decompress(padded, 65536), data);
  });

  it('fails with COMPRESSED_SHORT when the stream ends before a whole cluster', () => {
    const c = codec.compress(sampleCluster(65536, 4))!;
    expectCode(() => codec.decompress(c.subarray(0, c.length >> 1), 65536), 'COMPRESSED_SHORT');
    // A complete stream of half a cluster is short too.
    const half = codec.compress(sampleCluster(65536, 5).subarray(0, 32768))!;
    expectCode(() => codec.decompress(half, 65536), 'COMPRESSED_SHORT');
  });

  it('fails with COMPRESSED_BAD_DATA on garbage, as a CorruptionError carrying the host offset', () => {
    const garbage = new Uint8Array(4096).fill(0xff);
    let caught: unknown;
    try {
      codec.decompress(garbage, 65536, 0x50000);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(CorruptionError);
    expect((caught as CorruptionError).code).toBe('COMPRESSED_BAD_DATA');
    expect((caught as CorruptionError).offset).toBe(0x50000);
  });

  it('rejects an absurd cluster size', () => {
    expectCode(() => codec.decompress(new Uint8Array(16), 3 * 1024 * 1024), 'BAD_CLUSTER_SIZE');
  });
});

describe('codec specifics', () => {
  it('codecFor refuses unknown compression types', () => {
    expectCode(() => codecFor(2), 'UNKNOWN_COMPRESSION_TYPE');
  });

  it('zlib output is raw deflate that a reference inflater (node:zlib) decodes', () => {
    const data = sampleCluster(65536, 11);
    const c = codecFor(0).compress(data)!;
    expectBytes(new Uint8Array(inflateRawSync(c, { windowBits: 12 })), data);
  });

  it("zlib deflate through the system's libz gives pako's bytes (both QEMU's; node:zlib's differ), also for data that does not fit", () => {
    const libz = libzRawDeflater(ZLIB_LEVEL, ZLIB_WINDOW_BITS, ZLIB_MEM_LEVEL, 0);
    // libz.so.1 loads on every machine the harness runs on (QEMU needs it): never skipped
    expect(libz, 'libz.so.1 through koffi').toBeDefined();
    const inputs: Uint8Array[] = [sampleCluster(2 * 1024 * 1024, 9)];
    for (const size of [512, 4096, 65536]) {
      inputs.push(sampleCluster(size, size + 1), new Uint8Array(size).fill(0x5a), randomBytes(size, size));
      const half = randomBytes(size, 3); // half random, half text: compresses to about 3/4
      half.set(sampleCluster(size / 2, 5), size / 2);
      inputs.push(half);
      const stamped = new Uint8Array(size).fill(0x33); // sector stamps over a fill, as the harness writes
      for (let o = 0; o < size; o += 512) stamped.set(randomBytes(24, o + 1), o);
      inputs.push(stamped);
    }
    let fitted = 0;
    for (const data of inputs) {
      const ours = libz!.deflate(data, data.length - 1);
      const ref = pakoCompress(data);
      expect(ours === undefined, `fits (${data.length} bytes)`).toBe(ref === undefined);
      if (ours && ref) {
        expectBytes(ours, ref);
        fitted++;
      }
      expect(codecFor(0).compress(data)?.length).toBe(ref?.length);
    }
    expect(fitted).toBe(13); // all but the random ones
  });

  it('zlib, like QEMU, takes the first cluster of a stream that inflates to more (Z_BUF_ERROR with full output)', () => {
    const big = sampleCluster(8192, 12);
    const c = codecFor(0).compress(big)!;
    expectBytes(codecFor(0).decompress(c, 4096), big.subarray(0, 4096));
  });

  it('zstd refuses a frame that decodes to more than one cluster (QEMU: frame not fully flushed)', () => {
    const big = sampleCluster(8192, 13);
    const c = codecFor(1).compress(big)!;
    expectCode(() => codecFor(1).decompress(c, 4096), 'COMPRESSED_TOO_LONG');
  });

  it('zstd decodes a cluster split over several frames, and skips skippable frames', () => {
    const data = sampleCluster(65536, 14);
    const a = codecFor(1).compress(data.subarray(0, 20000))!;
    const b = codecFor(1).compress(data.subarray(20000))!;
    const skippable = new Uint8Array([0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    const joined = new Uint8Array(a.length + skippable.length + b.length + 100);
    joined.set(a);
    joined.set(skippable, a.length);
    joined.set(b, a.length + skippable.length);
    expectBytes(codecFor(1).decompress(joined, 65536), data);
  });

  it('zstd frame scanner finds the end of a frame', () => {
    const c = codecFor(1).compress(sampleCluster(65536, 15))!;
    expect(scanFrame(c, 0)).toEqual({ kind: 'zstd', length: c.length });
    expect(scanFrame(c.subarray(0, c.length - 1), 0)).toEqual({ kind: 'truncated' });
    expect(scanFrame(new Uint8Array(8), 0).kind).toBe('invalid');
  });
});

describe.each(types)('$name codec against QEMU', ({ name, type }) => {
  const codec = codecFor(type);

  function makeImage(tag: string, writes: string[]): string {
    const path = join(tmp.dir, `${name}-${tag}.qcow2`);
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `compression_type=${name}`, path, '4M']);
    for (const w of writes) run('qemu-io', ['-c', w, path]);
    return path;
  }

  it('decompresses clusters that qemu-io wrote compressed (pattern, sample data, an unaligned cluster)', () => {
    const sample = sampleCluster(65536, 21);
    const sample2 = sampleCluster(65536, 22);
    const src = join(tmp.dir, `${name}-src.bin`);
    writeFileSync(src, Buffer.concat([sample, sample2]));
    const path = makeImage('read', [`write -c -P 0x5a 0 64k`, `write -c -s ${src} 64k 128k`]);
    const img = readImage(path);
    expect(img.compressionType).toBe(type);

    const d0 = compressedDescriptor(img, 0);
    expectBytes(
      codec.decompress(img.bytes.subarray(d0.hostOffset, d0.hostOffset + d0.length), 65536, d0.hostOffset),
      new Uint8Array(65536).fill(0x5a),
    );
    const d1 = compressedDescriptor(img, 65536);
    const d2 = compressedDescriptor(img, 131072);
    // QEMU packs compressed clusters written together back to back (in either order, as the
    // compression tasks run in parallel): one of the two starts mid-sector.
    expect([d1.hostOffset % 512, d2.hostOffset % 512].some((r) => r !== 0)).toBe(true);
    expectBytes(
      codec.decompress(img.bytes.subarray(d1.hostOffset, d1.hostOffset + d1.length), 65536),
      sample,
    );
    expectBytes(
      codec.decompress(img.bytes.subarray(d2.hostOffset, d2.hostOffset + d2.length), 65536),
      sample2,
    );
  });

  it('produces the same bytes as QEMU for a pattern cluster (same parameters, same library family)', () => {
    const path = makeImage('same', ['write -c -P 0x5a 0 64k']);
    const img = readImage(path);
    const d = compressedDescriptor(img, 0);
    const ours = codec.compress(new Uint8Array(65536).fill(0x5a))!;
    // The descriptor covers whole sectors, so QEMU's stream is a prefix of the covered bytes.
    expectBytes(img.bytes.subarray(d.hostOffset, d.hostOffset + ours.length), ours);
  });

  it('writes clusters that QEMU decompresses (our stream spliced into a QEMU image, read back by qemu-img convert)', () => {
    const path = makeImage('splice', ['write -c -P 0x5a 0 64k']);
    const img = readImage(path);
    const d = compressedDescriptor(img, 0);
    const data = sampleCluster(65536, 31);
    const ours = codec.compress(data)!;
    // The compressed cluster was written at the start of a fresh host cluster: ours fits there.
    expect(d.hostOffset % 65536).toBe(0);
    const bytes = new Uint8Array(
      Math.max(img.bytes.length, d.hostOffset + Math.ceil(ours.length / 512) * 512),
    );
    bytes.set(img.bytes);
    bytes.fill(0, d.hostOffset, d.hostOffset + 65536 > bytes.length ? bytes.length : d.hostOffset + 65536);
    bytes.set(ours, d.hostOffset);
    setBe64(bytes, d.entryOffset, compressedEntry(d.hostOffset, ours.length, d.x));
    writeFileSync(path, bytes);
    const raw = join(tmp.dir, `${name}-splice.raw`);
    run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path, raw]);
    expectBytes(new Uint8Array(readFileSync(raw)).subarray(0, 65536), data);
  });
});
