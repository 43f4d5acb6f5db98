/**
 * Image layouts within an implementation's capabilities: v2/v3, cluster sizes 512 B – 2 MiB,
 * refcount widths 1–64, extended L2 (clusters ≥ 16 KiB), zlib/zstd (v3), lazy refcounts (v3),
 * and virtual sizes from a few sectors to 1 GiB (sparse: the model costs nothing for the holes).
 */
import fc from 'fast-check';
import type { Capabilities } from '../adapters/adapter.ts';
import type { CompatLevel, CompressionType, ImageLayout } from '../layout.ts';

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

export function imageLayoutArbitrary(caps: Capabilities): fc.Arbitrary<ImageLayout> {
  const compat = fc.constantFrom<CompatLevel>(...caps.compat);
  return compat.chain((level) => {
    const v3 = level === '1.1';
    const clusterBits = fc.integer({
      min: Math.max(9, caps.clusterBits.min),
      max: Math.min(21, caps.clusterBits.max),
    });
    const refcountBits = v3 ? fc.constantFrom(...caps.refcountBits) : fc.constant(16);
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
      .map((layout) => ({ ...layout, extendedL2: layout.extendedL2 && layout.clusterBits >= 14 }));
  });
}
