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
  /**
   * Why no sequence can observe it, when that was found (an equivalent mutant): the bench still
   * runs it, and reports it apart.
   */
  equivalent?: string;
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
    equivalent:
      'apply has already cleared every COPIED flag (updateCopiedFlags(() => false)) and every cluster the ' +
      'reverted tree reaches is shared with the snapshot, so the recompute changes nothing; 300 random ' +
      'snapshot-heavy sequences on the planted copy left qemu-img check clean',
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
    equivalent:
      'the offset passed only feeds the IV: LUKS derives it from the host offset (unchanged), and AES ' +
      "from guest / 512, which plain64 truncates to the same sector (head < 512): the planted copy's " +
      'unaligned AES and LUKS read-modify-writes read back exactly',
    file: 'engine/data-path.ts',
    line: '    if (head !== 0 || buf.length !== src.length) this.readData(buf, start, guest - head);',
    planted: '    if (head !== 0 || buf.length !== src.length) this.readData(buf, start, guest);',
  },
  // Added this session, in other spots of the same classes (does the harness generalise?):
  {
    name: 'a run whose last cluster starts a new refcount block range gets no block (off by one)',
    area: 'refcounts',
    file: 'engine/allocator.ts',
    line: '    for (let c = start; c < start + n; c = (Math.floor(c / E) + 1) * E) {',
    planted: '    for (let c = start; c < start + n - 1; c = (Math.floor(c / E) + 1) * E) {',
  },
  {
    name: "an evicted dirty table is written at the incoming table's offset",
    area: 'metadata cache',
    file: 'engine/cache.ts',
    line: '        this.dev.write(victim.table, off);',
    planted: '        this.dev.write(victim.table, offset);',
  },
  {
    name: 'a write into zeroed subclusters keeps their zero bits',
    area: 'subclusters',
    file: 'engine/data-path.ts',
    line: '      zeroBitmap: (e.zeroBitmap & ~mask) >>> 0,',
    planted: '      zeroBitmap: e.zeroBitmap >>> 0,',
  },
  {
    name: "a read through to the backing file runs past the backing file's end",
    area: 'backing files',
    file: 'engine/data-path.ts',
    line: '    const n = Math.min(dst.length, b.size - guestOffset);',
    planted: '    const n = dst.length;',
  },
  {
    name: 'freeing a compressed cluster that straddles two host clusters drops only the first refcount',
    area: 'compressed clusters',
    file: 'engine/data-path.ts',
    line: '      for (let c = first; c <= last; c++) this.s.rc.decrement(c, 1);',
    planted: '      for (let c = first; c < last || c === first; c++) this.s.rc.decrement(c, 1);',
  },
  {
    name: 'COPIED not recomputed after a snapshot delete',
    area: 'snapshots',
    file: 'engine/snapshots.ts',
    line: '    this.s.map.updateCopiedFlags();\n    this.s.meta.endUnorderedChange(dirty);\n    this.s.alloc.resetBytes();',
    planted: '    this.s.meta.endUnorderedChange(dirty);\n    this.s.alloc.resetBytes();',
  },
  {
    name: "LUKS sectors encrypted with the guest offset's IV instead of the host offset's",
    area: 'encryption',
    file: 'engine/encryption.ts',
    line: '    encrypt: (buf, host) => inPlace(buf, luks.encrypt(buf, host)),',
    planted: '    encrypt: (buf, _host, guest) => inPlace(buf, luks.encrypt(buf, guest)),',
  },
];
