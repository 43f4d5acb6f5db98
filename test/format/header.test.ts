/**
 * Header and table codecs: decode/encode round trips for every field, QEMU's byte layout, and
 * extensions QEMU does not know surviving a rewrite byte for byte.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as C from '../../src/format/constants.ts';
import {
  backingFormat,
  bitmapsExtension,
  cryptoHeaderPointer,
  dataFileName,
  decodeHeader,
  encodeBitmapsExtension,
  encodeCryptoHeaderPointer,
  encodeHeader,
  featureNames,
  newHeader,
  QEMU_FEATURE_NAMES,
  setExtension,
} from '../../src/format/header.ts';
import { textEncoder } from '../../src/format/bytes.ts';
import {
  ClusterType,
  SubclusterType,
  classifyL2,
  getRefcount,
  readL1,
  readL2,
  readRefTable,
  setRefcount,
  subclusterType,
  writeL1,
  writeL2,
  writeRefTable,
} from '../../src/format/tables.ts';

describe('header', () => {
  it('encodes a fresh v3 header as qemu-img create does (112 bytes, feature table of 8 entries)', () => {
    const h = newHeader({ version: 3, clusterBits: 16, size: 64 << 20, refcountOrder: 4 });
    h.refcountTableOffset = 0x10000;
    h.refcountTableClusters = 1;
    h.l1TableOffset = 0x30000;
    h.l1Size = 1;
    const b = encodeHeader(h);
    expect(b.length).toBe(112 + 8 + 8 * 48 + 8);
    expect(Buffer.from(b.subarray(0, 8)).toString('hex')).toBe('514649fb00000003');
    expect(b[100 + 3]).toBe(112); // header_length
    expect(Buffer.from(b.subarray(112, 120)).toString('hex')).toBe('6803f85700000180');
    const back = decodeHeader(b);
    expect(featureNames(back)).toEqual(QEMU_FEATURE_NAMES);
    expect(back.size).toBe(64 << 20);
    expect(back.l1TableOffset).toBe(0x30000);
  });

  it('round-trips every field, for v2 and v3', () => {
    fc.assert(
      fc.property(
        fc.record({
          version: fc.constantFrom(2 as const, 3 as const),
          clusterBits: fc.integer({ min: 9, max: 21 }),
          size: fc.integer({ min: 0, max: 2 ** 50 }),
          l1Size: fc.integer({ min: 0, max: 1 << 20 }),
          l1: fc.integer({ min: 0, max: 2 ** 40 }),
          rt: fc.integer({ min: 0, max: 2 ** 40 }),
          rtc: fc.integer({ min: 0, max: 1000 }),
          nb: fc.integer({ min: 0, max: 65536 }),
          so: fc.integer({ min: 0, max: 2 ** 40 }),
          incompat: fc.bigInt({ min: 0n, max: 31n }),
          compat: fc.bigInt({ min: 0n, max: 1n }),
          autoclear: fc.bigInt({ min: 0n, max: 3n }),
          order: fc.integer({ min: 0, max: 6 }),
          backing: fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: undefined }),
        }),
        (r) => {
          const h = newHeader({
            version: r.version,
            clusterBits: r.clusterBits,
            size: r.size,
            refcountOrder: r.order,
          });
          Object.assign(h, {
            l1Size: r.l1Size,
            l1TableOffset: r.l1,
            refcountTableOffset: r.rt,
            refcountTableClusters: r.rtc,
            nbSnapshots: r.nb,
            snapshotsOffset: r.so,
          });
          if (r.version === 3)
            Object.assign(h, {
              incompatibleFeatures: r.incompat,
              compatibleFeatures: r.compat,
              autoclearFeatures: r.autoclear,
            });
          h.backingFile = r.backing;
          let bytes: Uint8Array;
          try {
            bytes = encodeHeader(h);
          } catch {
            return; // does not fit in one cluster (small clusters, long names): refused by design
          }
          const back = decodeHeader(bytes);
          expect({ ...back, extraHeaderBytes: undefined }).toEqual({ ...h, extraHeaderBytes: undefined });
          expect(encodeHeader(back)).toEqual(bytes);
        },
      ),
      { seed: 42, numRuns: 300 },
    );
  });

  it('keeps unknown extensions and unknown header bytes byte for byte, in order', () => {
    const h = newHeader({ version: 3, clusterBits: 16, size: 1 << 20, refcountOrder: 4 });
    h.headerLength = 120; // a longer header than QEMU writes: bytes 105..119 are kept as they are
    h.extraHeaderBytes = Uint8Array.from({ length: 15 }, (_, i) => i + 1);
    const unknown = { type: 0x12345678, data: Uint8Array.from([9, 8, 7, 6, 5]) };
    h.extensions.push(unknown);
    setExtension(h, C.EXT_BACKING_FORMAT, textEncoder.encode('raw'));
    setExtension(h, C.EXT_DATA_FILE, textEncoder.encode('data.img'));
    setExtension(h, C.EXT_CRYPTO_HEADER, encodeCryptoHeaderPointer({ offset: 0x40000, length: 2068480 }));
    setExtension(
      h,
      C.EXT_BITMAPS,
      encodeBitmapsExtension({ nbBitmaps: 2, bitmapDirectorySize: 64, bitmapDirectoryOffset: 0x90000 }),
    );
    h.backingFile = 'base.img';
    const once = encodeHeader(h);
    const back = decodeHeader(once);
    // QEMU's order: backing format, data file, crypto header, feature table, bitmaps, unknown.
    expect(back.extensions.map((e) => e.type)).toEqual([
      C.EXT_BACKING_FORMAT,
      C.EXT_DATA_FILE,
      C.EXT_CRYPTO_HEADER,
      C.EXT_FEATURE_TABLE,
      C.EXT_BITMAPS,
      unknown.type,
    ]);
    expect(back.extensions[5]!.data).toEqual(unknown.data);
    expect(back.extraHeaderBytes).toEqual(h.extraHeaderBytes);
    expect(backingFormat(back)).toBe('raw');
    expect(dataFileName(back)).toBe('data.img');
    expect(cryptoHeaderPointer(back)).toEqual({ offset: 0x40000, length: 2068480 });
    expect(bitmapsExtension(back)).toEqual({
      nbBitmaps: 2,
      bitmapDirectorySize: 64,
      bitmapDirectoryOffset: 0x90000,
    });
    expect(back.backingFile).toBe('base.img');
    expect(encodeHeader(back)).toEqual(once);
  });

  it('leaves the feature name table out when cluster 0 has no room for it, as QEMU does', () => {
    const h = newHeader({ version: 3, clusterBits: 9, size: 1 << 20, refcountOrder: 4 });
    setExtension(h, C.EXT_BACKING_FORMAT, textEncoder.encode('qcow2'));
    h.backingFile = 'base.qcow2';
    const b = encodeHeader(h);
    expect(b.length).toBeLessThanOrEqual(512);
    const back = decodeHeader(b);
    expect(featureNames(back)).toEqual([]);
    expect(back.backingFile).toBe('base.qcow2');
    expect(backingFormat(back)).toBe('qcow2');
    // Too much even without it: refused.
    h.backingFile = 'x'.repeat(400);
    expect(() => encodeHeader(h)).toThrow(/exceed one cluster/);
  });

  it('refuses what QEMU refuses, with the field named', () => {
    const h = newHeader({ version: 3, clusterBits: 16, size: 1 << 20, refcountOrder: 4 });
    const b = encodeHeader(h);
    const patched = (f: (x: Buffer) => void): Uint8Array => {
      const x = Buffer.from(b);
      f(x);
      return x;
    };
    const code = (bytes: Uint8Array): string => {
      try {
        decodeHeader(bytes);
        return 'ok';
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    expect(code(patched((x) => x.writeUInt32BE(0x514649fc, 0)))).toBe('BAD_MAGIC');
    expect(code(patched((x) => x.writeUInt32BE(4, 4)))).toBe('UNSUPPORTED_VERSION');
    expect(code(patched((x) => x.writeUInt32BE(22, 20)))).toBe('BAD_CLUSTER_BITS');
    expect(code(patched((x) => x.writeUInt32BE(100, 100)))).toBe('BAD_HEADER_LENGTH');
    expect(code(patched((x) => x.writeUInt32BE(7, 96)))).toBe('BAD_REFCOUNT_ORDER');
    expect(code(b.subarray(0, 50))).toBe('TRUNCATED_HEADER');
  });
});

describe('tables', () => {
  it('L1 entries: offset bits 9..55 and COPIED round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 - 1 }), fc.boolean(), (cluster, copied) => {
        const t = new Uint8Array(16);
        const off = cluster * 512;
        writeL1(t, 1, off, copied);
        expect(readL1(t, 1)).toEqual({ l2Offset: off, copied: copied && off !== 0, reserved: false });
      }),
      { seed: 1 },
    );
  });

  it('standard L2 entries of every type round-trip through the one classifier', () => {
    const t = new Uint8Array(64);
    writeL2(t, 0, 16, false, { type: ClusterType.Normal, hostOffset: 0x123450000, copied: true });
    writeL2(t, 1, 16, false, { type: ClusterType.ZeroPlain, hostOffset: 0, copied: false });
    writeL2(t, 2, 16, false, { type: ClusterType.ZeroAlloc, hostOffset: 0x70000, copied: true });
    writeL2(t, 3, 16, false, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
    expect(Buffer.from(t.subarray(0, 32)).toString('hex')).toBe(
      '8000000123450000' + '0000000000000001' + '8000000000070001' + '0000000000000000',
    );
    expect(readL2(t, 0, 16, false)).toMatchObject({
      type: ClusterType.Normal,
      hostOffset: 0x123450000,
      copied: true,
    });
    expect(readL2(t, 1, 16, false).type).toBe(ClusterType.ZeroPlain);
    expect(readL2(t, 2, 16, false)).toMatchObject({ type: ClusterType.ZeroAlloc, hostOffset: 0x70000 });
    expect(readL2(t, 3, 16, false).type).toBe(ClusterType.Unallocated);
    // With an external data file, offset 0 + COPIED is an allocated cluster.
    writeL2(t, 4, 16, false, { type: ClusterType.Normal, hostOffset: 0, copied: true });
    expect(readL2(t, 4, 16, false, true).type).toBe(ClusterType.Normal);
    expect(readL2(t, 4, 16, false, false).type).toBe(ClusterType.Unallocated);
  });

  it('compressed descriptors split at 62 - (cluster_bits - 8), for every cluster size', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 9, max: 21 }),
        fc.integer({ min: 0, max: 2 ** 44 }),
        fc.integer({ min: 0, max: 2 ** 12 }),
        (bits, host, sectorsRaw) => {
          const x = 62 - (bits - 8);
          const hostOffset = host % 2 ** Math.min(x, 52);
          const sectors = sectorsRaw % 2 ** (62 - x);
          const t = new Uint8Array(8);
          writeL2(t, 0, bits, false, { type: ClusterType.Compressed, hostOffset, copied: false, sectors });
          const e = readL2(t, 0, bits, false);
          expect(e.type).toBe(ClusterType.Compressed);
          expect(e.hostOffset).toBe(hostOffset);
          expect(e.compressedLength).toBe((sectors + 1) * 512 - (hostOffset % 512));
          // The raw 64-bit value, computed with bigints.
          const raw = (1n << 62n) | (BigInt(sectors) << BigInt(x)) | BigInt(hostOffset);
          expect(Buffer.from(t).readBigUInt64BE(0)).toBe(raw);
        },
      ),
      { seed: 7, numRuns: 500 },
    );
  });

  it('extended L2: bitmaps and subcluster types', () => {
    const t = new Uint8Array(32);
    writeL2(t, 1, 16, true, {
      type: ClusterType.Normal,
      hostOffset: 0x50000,
      copied: true,
      allocBitmap: 0b0101,
      zeroBitmap: 0b1010,
    });
    const e = readL2(t, 1, 16, true);
    expect([e.allocBitmap, e.zeroBitmap]).toEqual([0b0101, 0b1010]);
    expect(subclusterType(e, 0)).toBe(SubclusterType.Normal);
    expect(subclusterType(e, 1)).toBe(SubclusterType.ZeroAlloc);
    expect(subclusterType(e, 2)).toBe(SubclusterType.Normal);
    expect(subclusterType(e, 3)).toBe(SubclusterType.ZeroAlloc);
    expect(subclusterType(e, 4)).toBe(SubclusterType.UnallocatedAlloc);
    const both = classifyL2(0x80000000, 0x50000, 16, 1, 1, true);
    expect(subclusterType(both, 0)).toBe(SubclusterType.Invalid);
    const none = classifyL2(0, 0, 16, 0, 0b100, true);
    expect(subclusterType(none, 2)).toBe(SubclusterType.ZeroPlain);
    expect(subclusterType(none, 3)).toBe(SubclusterType.UnallocatedPlain);
  });

  it('refcount table entries keep offset bits 9..63', () => {
    const t = new Uint8Array(16);
    writeRefTable(t, 1, 0x1234560000);
    expect(readRefTable(t, 1)).toBe(0x1234560000);
  });

  it('refcount blocks of every width: values round-trip; sub-byte widths pack LSB-first', () => {
    for (let order = 0; order <= 6; order++) {
      const max = order === 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1;
      fc.assert(
        fc.property(
          fc.array(fc.integer({ min: 0, max: Math.min(max, 2 ** 52) }), { minLength: 1, maxLength: 64 }),
          (values) => {
            const block = new Uint8Array(64 * 8);
            values.forEach((v, i) => setRefcount(block, i, order, v));
            values.forEach((v, i) => expect(getRefcount(block, i, order)).toBe(v));
          },
        ),
        { seed: order, numRuns: 50 },
      );
    }
    // The notes' reference bytes: clusters 0-5 with refcount 1.
    const hex = (order: number): string => {
      const b = new Uint8Array(8);
      for (let i = 0; i < 6; i++) setRefcount(b, i, order, 1);
      return Buffer.from(b.subarray(0, order === 0 ? 1 : order === 1 ? 2 : 3)).toString('hex');
    };
    expect(hex(0)).toBe('3f');
    expect(hex(1)).toBe('5505');
    expect(hex(2)).toBe('111111');
  });
});
