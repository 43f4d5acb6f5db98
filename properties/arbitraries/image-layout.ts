/**
 * Image layouts within an implementation's capabilities: v2/v3, cluster sizes 512 B – 2 MiB,
 * refcount widths 1–64, extended L2 (clusters ≥ 16 KiB), zlib/zstd (v3), lazy refcounts (v3),
 * and virtual sizes from a few sectors to 1 GiB (sparse: the model costs nothing for the holes);
 * optionally a backing file (qcow2 or raw, shorter, as long as or longer than the image, with a few
 * ranges written into it, named with or without its format); or else, optionally, AES or LUKS
 * encryption.
 */
import fc from 'fast-check';
import type { Capabilities } from '../adapters/adapter.ts';
import type {
  BackingFormat,
  BackingLayout,
  BackingWrite,
  CompatLevel,
  CompressionType,
  ImageLayout,
} from '../layout.ts';
import { patternArbitrary } from './pattern.ts';
import type { BitmapLayout } from '../model/bitmaps.ts';

/** 0–3 persistent bitmaps b0, b1, … (granularity 512 B – 4 MiB, some disabled). */
function bitmapsArbitrary(): fc.Arbitrary<BitmapLayout[]> {
  return fc
    .array(fc.record({ granularityBits: fc.integer({ min: 9, max: 22 }), disabled: fc.boolean() }), {
      minLength: 1,
      maxLength: 3,
    })
    .map((list) => list.map((b, i) => ({ name: `b${i}`, ...b, disabled: b.disabled && i > 0 })));
}

function sizeArbitrary(): fc.Arbitrary<number> {
  const sectors = (min: number, max: number): fc.Arbitrary<number> =>
    fc.integer({ min, max }).map((n) => n * 512);
  return fc.oneof(
    { weight: 3, arbitrary: sectors(1, 256) }, // ≤ 128 KiB
    { weight: 8, arbitrary: sectors(257, 32768) }, // ≤ 16 MiB
    { weight: 2, arbitrary: sectors(32769, 262144) }, // ≤ 128 MiB
    { weight: 1, arbitrary: fc.constantFrom(512 << 20, 1 << 30) },
  );
}

/** Up to 4 MiB per backing write: the base is made by qemu-io and the model holds the bytes. */
const MAX_BACKING_WRITE = 4 << 20;

function backingArbitrary(topSize: number): fc.Arbitrary<BackingLayout> {
  const sector = (n: number): number => Math.max(512, Math.ceil(n / 512) * 512);
  // shorter bases three times as often (an image grown past its base: the base ends inside a
  // cluster, where reads and copy-on-write must stop at the base's end)
  const size = fc.oneof(
    { weight: 1, arbitrary: fc.constant(topSize) },
    {
      weight: 3,
      arbitrary: fc.double({ min: 0.05, max: 0.95, noNaN: true }).map((f) => sector(topSize * f)),
    },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 64 }).map((n) => topSize + n * 512) },
    {
      weight: 1,
      arbitrary: fc
        .double({ min: 1.05, max: 2, noNaN: true })
        .map((f) => sector(Math.min(topSize * f, 1 << 30))),
    },
  );
  return fc
    .record({
      format: fc.constantFrom<BackingFormat>('qcow2', 'raw'),
      size,
      // most bases hold data from their start (so that partial writes over it need real COW)
      dense: fc.oneof(
        { weight: 2, arbitrary: fc.constant(true) },
        { weight: 1, arbitrary: fc.constant(false) },
      ),
      densePattern: patternArbitrary(),
      probed: fc.oneof(
        { weight: 2, arbitrary: fc.constant(false) },
        { weight: 1, arbitrary: fc.constant(true) },
      ),
      writes: fc.array(
        fc.record({
          start: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
          length: fc.nat(),
          aligned: fc.boolean(),
          pattern: patternArbitrary(),
        }),
        { minLength: 0, maxLength: 4 },
      ),
    })
    .map(({ format, size: baseSize, writes, dense, densePattern, probed }) => ({
      format,
      size: baseSize,
      // a third of the images name no backing format (older QEMUs made them): it is probed
      ...(probed ? { probed } : {}),
      writes: [
        ...(dense ? [{ offset: 0, length: Math.min(baseSize, 1 << 20), pattern: densePattern || 0x42 }] : []),
        ...writes.map((w): BackingWrite => {
          let offset = Math.floor(w.start * baseSize);
          if (w.aligned) offset -= offset % 512;
          const room = Math.min(MAX_BACKING_WRITE, baseSize - offset);
          let length = 1 + (w.length % room);
          if (w.aligned) length = Math.min(room, Math.ceil(length / 512) * 512);
          return { offset, length, pattern: w.pattern };
        }),
      ],
    }));
}

export function imageLayoutArbitrary(caps: Capabilities): fc.Arbitrary<ImageLayout> {
  const compat = fc.constantFrom<CompatLevel>(...caps.compat);
  return compat.chain((level) => {
    const v3 = level === '1.1';
    const lo = Math.max(9, caps.clusterBits.min);
    const hi = Math.min(21, caps.clusterBits.max);
    const bits = (a: number, b: number): fc.Arbitrary<number> =>
      fc.integer({ min: Math.max(lo, Math.min(a, hi)), max: Math.min(hi, Math.max(b, lo)) });
    // Small clusters most often: many L2 tables and refcount blocks in a small disk (caches fill,
    // refcount blocks and the refcount table grow); 16–64 KiB (extended L2's subclusters); and
    // large clusters (big copy-on-write) now and then.
    const clusterBits = fc.oneof(
      { weight: 3, arbitrary: bits(9, 12) },
      { weight: 3, arbitrary: bits(13, 16) },
      { weight: 1, arbitrary: bits(17, 21) },
    );
    // refcount widths: each allowed one, with 64 bits (fewest refcounts per block: blocks and the
    // table grow soonest) and QEMU's default 16 more often
    const wide = caps.refcountBits.filter((b) => b === 64 || b === 16);
    const refcountBits = v3
      ? fc.oneof(
          { weight: 2, arbitrary: fc.constantFrom(...caps.refcountBits) },
          ...(wide.length > 0 ? [{ weight: 1, arbitrary: fc.constantFrom(...wide) }] : []),
        )
      : fc.constant(16);
    const compression: fc.Arbitrary<CompressionType> =
      v3 && caps.compressionTypes.length > 0
        ? fc.constantFrom(...caps.compressionTypes)
        : fc.constant('zlib');
    return fc
      .record({
        compat: fc.constant(level),
        clusterBits,
        refcountBits,
        extendedL2: v3 && caps.extendedL2 ? fc.boolean() : fc.constant(false),
        compressionType: compression,
        lazyRefcounts: v3 && caps.lazyRefcounts ? fc.boolean() : fc.constant(false),
        size: sizeArbitrary(),
      })
      .map((layout): ImageLayout => ({
        ...layout,
        extendedL2: layout.extendedL2 && layout.clusterBits >= 14,
      }))
      .chain((layout) => {
        // An implementation whose shrink costs seconds past `slowShrinkClusters` clusters (QEMU
        // 7.2: 74 s for one truncate of a 1 GiB image with 512-byte clusters): 7 times in 8 such
        // a layout is cut to that many clusters (small clusters and a multi-cluster L1 stay; the
        // virtual size is what goes), 1 in 8 it keeps its size, so the slow path is still met.
        const limit = caps.slowShrinkClusters;
        if (limit === undefined || layout.size / 2 ** layout.clusterBits <= limit) return fc.constant(layout);
        return fc.oneof(
          { weight: 1, arbitrary: fc.constant(layout) },
          { weight: 7, arbitrary: fc.constant({ ...layout, size: limit * 2 ** layout.clusterBits }) },
        );
      })
      .chain((layout) =>
        caps.backingFile &&
        (layout.compat === '0.10' || layout.clusterBits >= (caps.backingMinClusterBits ?? 9))
          ? fc.oneof(
              { weight: 3, arbitrary: fc.constant(layout) },
              {
                weight: 2,
                arbitrary: backingArbitrary(layout.size).map((backing) => ({ ...layout, backing })),
              },
            )
          : fc.constant(layout),
      )
      .chain((layout) =>
        // tiny metadata caches (two L2 tables, four refcount blocks: QEMU's minimums) in a third
        // of the runs, so that eviction and write-back happen in short sequences
        fc.oneof(
          { weight: 2, arbitrary: fc.constant(layout) },
          {
            weight: 1,
            arbitrary: fc.constant<ImageLayout>({
              ...layout,
              cache: { l2CacheSize: 2 << layout.clusterBits, refcountCacheSize: 4 << layout.clusterBits },
            }),
          },
        ),
      )
      .chain((layout) => {
        // encryption: not with a backing file here, and AES not with extended L2
        const formats = caps.encryption.filter((f) => f === 'luks' || !layout.extendedL2);
        const fits = layout.compat === '0.10' || layout.clusterBits >= (caps.encryptMinClusterBits ?? 9);
        if (layout.backing || formats.length === 0 || !fits) return fc.constant(layout);
        const weights = caps.encryptionWeights;
        if (weights !== undefined)
          // an implementation's own weights (Capabilities.encryptionWeights: a costly create)
          return fc.oneof(
            { weight: weights.none, arbitrary: fc.constant(layout) },
            ...formats
              .filter((f) => (weights[f] ?? 0) > 0)
              .map((encrypt) => ({
                weight: weights[encrypt] ?? 0,
                arbitrary: fc.constant<ImageLayout>({ ...layout, encrypt }),
              })),
          );
        return fc.oneof(
          // half of the layouts without a backing file: every other class is still met there,
          // and AES (guest-sector IVs) and LUKS (host-sector IVs) each get a share that a short
          // campaign meets several times
          { weight: 1, arbitrary: fc.constant(layout) },
          {
            weight: 1,
            arbitrary: fc.constantFrom(...formats).map((encrypt): ImageLayout => ({ ...layout, encrypt })),
          },
        );
      })
      .chain((layout) =>
        // persistent bitmaps: v3 only (qemu-img refuses them in v2 images)
        caps.bitmaps === true && layout.compat === '1.1'
          ? fc.oneof(
              { weight: 1, arbitrary: fc.constant(layout) },
              { weight: 2, arbitrary: bitmapsArbitrary().map((bitmaps) => ({ ...layout, bitmaps })) },
            )
          : fc.constant(layout),
      );
  });
}
