/**
 * Realistic engine bugs, one line each, one per qcow2 concern: what `scripts/planted-campaigns.ts`
 * runs a 90-second campaign against (a harness-power measure: each must be caught within the
 * budget). Written from the classes QEMU's own history has (refcount leaks, COW of shared or
 * backing-backed clusters, compressed descriptors, COPIED after revert, the tail after a shrink,
 * cache eviction, subcluster bitmaps, encryption's read-modify-write), not from the harness's
 * reach. Each `line` must occur once in its file (checked when planted).
 */
import type { PlantedBug } from './planted-bug.ts';

export interface NamedPlantedBug extends PlantedBug {
  name: string;
  /** The qcow2 concern it belongs to. */
  area: string;
}

export const PLANTED_SET: readonly NamedPlantedBug[] = [
  {
    name: 'freed clusters at odd indices never reach the refcount blocks (leak)',
    area: 'refcounts',
    file: 'engine/refcounts.ts',
    line: '    this.pending.set(cluster, (this.pending.get(cluster) ?? 0) + delta);',
    planted:
      '    if (cluster % 2 === 0) this.pending.set(cluster, (this.pending.get(cluster) ?? 0) + delta);',
  },
  {
    name: 'a write into a cluster shared with a snapshot writes in place (no COW)',
    area: 'copy-on-write',
    file: 'engine/data-path.ts',
    line: '    if (e.type === ClusterType.Normal && this.ownsExclusively(e)) {',
    planted: '    if (e.type === ClusterType.Normal) {',
  },
  {
    name: 'compressed descriptor one sector short',
    area: 'compressed clusters',
    file: 'engine/data-path.ts',
    line: '    const sectors = Math.floor((host + packed.length - 1) / C.SECTOR_SIZE) - Math.floor(host / C.SECTOR_SIZE);',
    planted:
      '    const sectors = Math.max(0, Math.floor((host + packed.length - 1) / C.SECTOR_SIZE) - Math.floor(host / C.SECTOR_SIZE) - 1);',
  },
  {
    name: 'COPIED not recomputed after a revert',
    area: 'snapshots',
    file: 'engine/snapshots.ts',
    line: '    this.s.map.updateCopiedFlags();\n    this.s.meta.endUnorderedChange(dirty);\n    this.dp.invalidate();',
    planted: '    this.s.meta.endUnorderedChange(dirty);\n    this.dp.invalidate();',
  },
  {
    name: 'stale tail after a shrink (the last cluster is not zeroed past the new end)',
    area: 'resize',
    file: 'engine/cluster-ops.ts',
    line: '      if (newSize % cs !== 0) {',
    planted: '      if (false && newSize % cs !== 0) {',
  },
  {
    name: 'a dirty table evicted from the metadata cache without being written',
    area: 'metadata cache',
    file: 'engine/cache.ts',
    line: '      if (victim.dirty) {',
    planted: '      if (victim.dirty && false) {',
  },
  {
    name: 'a write over several subclusters marks only the first allocated',
    area: 'subclusters',
    file: 'engine/data-path.ts',
    line: '    const mask = subclusterMask(first, last);',
    planted: '    const mask = subclusterMask(first, first);',
  },
  {
    name: 'a partial write over the backing file completes the cluster with zeros (no COW from backing)',
    area: 'backing files',
    file: 'engine/data-path.ts',
    line: '      (e.type === ClusterType.Unallocated && (!this.s.backing || guestOffset >= this.s.backing.size));',
    planted: '      e.type === ClusterType.Unallocated;',
  },
  {
    name: "an unaligned encrypted write decrypts the sector's old bytes with the wrong offset",
    area: 'encryption',
    file: 'engine/data-path.ts',
    line: '    if (head !== 0 || buf.length !== src.length) this.readData(buf, start, guest - head);',
    planted: '    if (head !== 0 || buf.length !== src.length) this.readData(buf, start, guest);',
  },
];
