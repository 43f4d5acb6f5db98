/**
 * Guest ranges. The arbitrary draws a *seed* (a placement, an extent class and two integers); the
 * model turns it into a legal range of the disk as it is when the command runs (sizes change with
 * resizes and snapshot applies), so shrinking a sequence never makes a range illegal.
 */
import fc from 'fast-check';

/** `recent`: over one of the last ranges written (where overwrites, discards and COW of fresh data happen). */
export type Placement =
  'cluster-aligned' | 'sector-aligned' | 'unaligned' | 'cluster-crossing' | 'disk-tail' | 'recent';
export type Extent = 'tiny' | 'sub-cluster' | 'one-cluster' | 'few-clusters' | 'large';

export interface RangeSeed {
  placement: Placement;
  extent: Extent;
  start: number;
  length: number;
}

export function rangeSeedArbitrary(): fc.Arbitrary<RangeSeed> {
  return fc.record({
    placement: fc.constantFrom<Placement>(
      'cluster-aligned',
      'sector-aligned',
      'unaligned',
      'cluster-crossing',
      'disk-tail',
      'recent',
      'recent',
    ),
    extent: fc.oneof(
      { weight: 3, arbitrary: fc.constant<Extent>('tiny') },
      { weight: 4, arbitrary: fc.constant<Extent>('sub-cluster') },
      { weight: 3, arbitrary: fc.constant<Extent>('one-cluster') },
      { weight: 3, arbitrary: fc.constant<Extent>('few-clusters') },
      { weight: 1, arbitrary: fc.constant<Extent>('large') },
    ),
    start: fc.nat(),
    length: fc.nat(),
  });
}

const LARGE_MAX = 8 << 20;
const LARGE_STEPS = 1 << 20;

function lengthFor(seed: RangeSeed, clusterSize: number, diskSize: number): number {
  switch (seed.extent) {
    case 'tiny':
      return 1 + (seed.length % 16);
    case 'sub-cluster':
      return 1 + (seed.length % Math.max(1, clusterSize - 1));
    case 'one-cluster':
      return clusterSize;
    case 'few-clusters':
      return (
        clusterSize * (2 + (seed.length % 3)) + (seed.length % 7 === 0 ? 0 : (seed.length >> 3) % clusterSize)
      );
    case 'large': {
      // log-uniform in [1, min(8 MiB, disk)]: every scale equally often (P(≥ 1 MiB) ≈ 13%,
      // P(≥ 4 MiB) ≈ 4% at 8 MiB), where a uniform draw made 3 in 4 of them megabytes, and the
      // bytes, not the metadata, the harness's cost (the motifs span L2 tables and refcount blocks)
      const max = Math.min(LARGE_MAX, diskSize);
      const u = (seed.length % LARGE_STEPS) / (LARGE_STEPS - 1);
      return Math.max(1, Math.min(max, Math.floor(Math.exp(u * Math.log(max + 1)))));
    }
  }
}

/** A range [offset, offset + length) inside a disk of `diskSize` bytes, length ≥ 1. */
export function resolveRange(
  seed: RangeSeed,
  clusterSize: number,
  diskSize: number,
  recent: readonly { offset: number; length: number }[] = [],
): { offset: number; length: number } {
  let length = Math.min(lengthFor(seed, clusterSize, diskSize), diskSize);
  const room = diskSize - length; // highest legal start
  let offset: number;
  switch (seed.placement) {
    case 'cluster-aligned':
      offset = Math.floor((seed.start % (room + 1)) / clusterSize) * clusterSize;
      break;
    case 'sector-aligned':
      offset = Math.floor((seed.start % (room + 1)) / 512) * 512;
      break;
    case 'unaligned':
      offset = seed.start % (room + 1);
      break;
    case 'cluster-crossing': {
      const clusters = Math.max(1, Math.floor(diskSize / clusterSize));
      const boundary = (1 + (seed.start % clusters)) * clusterSize;
      const before = 1 + (seed.start % Math.min(length, 4096));
      offset = Math.max(0, Math.min(room, boundary - before));
      break;
    }
    case 'disk-tail':
      offset = room;
      break;
    case 'recent': {
      // over a recent write: from its start (odd seeds: its cluster's start), else cluster-aligned
      // (half the time the latest write: discarding or overwriting what was just written)
      const pick = seed.start % 2 === 0 ? 0 : (seed.start >> 1) % Math.max(1, recent.length);
      const base = recent.length > 0 ? recent[pick] : undefined;
      const at = base ? base.offset - (seed.length % 2 === 1 ? base.offset % clusterSize : 0) : seed.start;
      offset = base ? Math.min(room, at) : Math.floor((seed.start % (room + 1)) / clusterSize) * clusterSize;
      // few clusters over a recent write: exactly its clusters (a discard then frees all of them)
      if (base && seed.extent === 'few-clusters') {
        const end = Math.ceil((base.offset + base.length) / clusterSize) * clusterSize;
        length = Math.max(1, Math.min(diskSize, end) - Math.min(offset, at));
        offset = Math.max(0, Math.min(at, diskSize - length));
      }
      break;
    }
  }
  length = Math.min(length, diskSize - offset);
  return { offset, length };
}
