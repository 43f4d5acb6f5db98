/**
 * The cost hints of the layout arbitrary (Capabilities.encryptionWeights, slowShrinkClusters):
 * qemu-io draws LUKS layouts and huge small-cluster layouts less often, yet still draws them, and
 * an implementation without the hints keeps the default distribution.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Capabilities } from './adapters/adapter.ts';
import { QEMU_CAPABILITIES } from './adapters/qemu-io.ts';
import { imageLayoutArbitrary } from './arbitraries/image-layout.ts';
import type { ImageLayout } from './layout.ts';

const N = 4000;
const sample = (caps: Capabilities): ImageLayout[] =>
  fc.sample(imageLayoutArbitrary(caps), { seed: 42, numRuns: N });
const share = (layouts: ImageLayout[], p: (l: ImageLayout) => boolean): number =>
  layouts.filter(p).length / layouts.length;

const { encryptionWeights: _w, slowShrinkClusters: _s, ...defaults } = QEMU_CAPABILITIES;
const plain = sample(defaults);
const qemu = sample(QEMU_CAPABILITIES);
const luks = (l: ImageLayout): boolean => l.encrypt === 'luks';
const aes = (l: ImageLayout): boolean => l.encrypt === 'aes';
const huge = (l: ImageLayout): boolean =>
  l.size / 2 ** l.clusterBits > (QEMU_CAPABILITIES.slowShrinkClusters ?? 0);

describe('layout cost hints', () => {
  it('without hints: half the encryptable layouts encrypted (LUKS also where AES cannot go)', () => {
    expect(share(plain, luks)).toBeGreaterThan(0.1);
    expect(share(plain, aes)).toBeGreaterThan(0.08);
    expect(share(plain, luks)).toBeGreaterThan(share(plain, aes));
  });

  it('qemu-io: LUKS a third as often, AES as often as without hints, both still drawn', () => {
    const ratio = share(qemu, luks) / share(plain, luks);
    expect(ratio).toBeGreaterThan(0.25);
    expect(ratio).toBeLessThan(0.42);
    expect(qemu.filter(luks).length).toBeGreaterThan(50);
    expect(Math.abs(share(qemu, aes) - share(plain, aes))).toBeLessThan(0.03);
  });

  it('qemu-io: layouts past slowShrinkClusters about 1 in 8 as often, still drawn', () => {
    const before = plain.filter(huge).length;
    const after = qemu.filter(huge).length;
    expect(before).toBeGreaterThan(40);
    expect(after).toBeGreaterThan(0);
    expect(after / before).toBeLessThan(0.25);
    // the cut ones keep their cluster size and land exactly on the limit
    const limit = QEMU_CAPABILITIES.slowShrinkClusters!;
    const cut = qemu.filter((l) => l.size === limit * 2 ** l.clusterBits && l.clusterBits <= 11);
    expect(cut.length).toBeGreaterThan(before / 4);
  });
});
