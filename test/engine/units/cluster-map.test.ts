/** The cluster map on the in-memory device, with hooks standing in for refcounts and the allocator. */
import { describe, expect, it } from 'vitest';
import { ClusterMap } from '../../../src/engine/cluster-map.ts';
import { ClusterType } from '../../../src/format/tables.ts';
import { MemoryDevice } from '../../../src/io/device.ts';

const CS = 512;

function open(l1Size = 1) {
  const dev = new MemoryDevice();
  dev.write(new Uint8Array(4 * CS), 0); // L1 at cluster 1; clusters from 4 are free
  const refs = new Map<number, number>();
  let next = 4;
  const freed: number[] = [];
  const relocations: Array<{ table: Uint8Array; old: { offset: number; clusters: number } }> = [];
  const map = new ClusterMap(
    dev,
    {
      alloc: (n) => {
        const off = next * CS;
        for (let i = 0; i < n; i++) refs.set(next + i, 1);
        next += n;
        return off;
      },
      free: (off) => {
        freed.push(off);
        refs.set(off / CS, (refs.get(off / CS) ?? 0) - 1);
      },
      refcount: (off) => refs.get(off / CS) ?? 0,
      relocateL1: (table, old) => {
        relocations.push({ table, old });
        const off = next * CS;
        next += Math.ceil(table.length / CS);
        dev.write(table, off);
        return { offset: off };
      },
    },
    { clusterBits: 9, extendedL2: false, dataFile: false, l1Offset: CS, l1Size, cacheTables: 2 },
  );
  return { dev, map, refs, freed, relocations };
}

describe('ClusterMap', () => {
  it('reads an unmapped cluster as unallocated', () => {
    const { map } = open();
    expect(map.lookup(5).type).toBe(ClusterType.Unallocated);
  });

  it('allocates an L2 table on the first write and round-trips an entry', () => {
    const { map, refs } = open();
    const slot = map.slotForWrite(5);
    map.setEntry(slot, { type: ClusterType.Normal, hostOffset: 10 * CS, copied: true });
    expect(slot.l2Offset).toBe(4 * CS);
    expect(refs.get(4)).toBe(1);
    expect(map.l1Dirty()).toBe(true);
    const e = map.lookup(5);
    expect([e.type, e.hostOffset, e.copied]).toEqual([ClusterType.Normal, 10 * CS, true]);
  });

  it('copies a shared L2 table before writing to it, and drops the old reference', () => {
    const { map, refs, freed } = open();
    map.setEntry(map.slotForWrite(0), { type: ClusterType.Normal, hostOffset: 10 * CS, copied: true });
    refs.set(4, 2); // a snapshot shares the table
    map.updateCopiedFlags(); // L1 COPIED goes: refcount 2
    const slot = map.slotForWrite(1);
    expect(slot.l2Offset).not.toBe(4 * CS);
    expect(freed).toEqual([4 * CS]);
    expect(map.lookup(0).hostOffset).toBe(10 * CS); // the copy keeps the entries
  });

  it('grows the L1 table through the relocation hook, keeping its entries', () => {
    const { map, relocations } = open(1);
    map.setEntry(map.slotForWrite(3), { type: ClusterType.Normal, hostOffset: 10 * CS, copied: true });
    map.growL1(100);
    expect(relocations).toHaveLength(1);
    expect(relocations[0]!.old).toEqual({ offset: CS, clusters: 1 });
    expect(map.l1Size).toBe(100);
    expect(map.l1Place()).toEqual({ offset: 5 * CS, bytes: 800 }); // after the L2 table at cluster 4
    expect(map.lookup(3).hostOffset).toBe(10 * CS);
  });

  it('counts the references of its tree and frees tables beyond a shrunk L1', () => {
    const { map, freed } = open(2);
    map.setEntry(map.slotForWrite(0), { type: ClusterType.Normal, hostOffset: 10 * CS, copied: true });
    map.setEntry(map.slotForWrite(64), { type: ClusterType.Normal, hostOffset: 11 * CS, copied: true });
    const refs = map.treeReferences();
    expect([...refs.entries()].sort((a, b) => a[0] - b[0])).toEqual([
      [4, 1],
      [5, 1],
      [10, 1],
      [11, 1],
    ]);
    map.shrinkL1(1);
    // the table past the new end, and the active tree's reference to the cluster it maps
    expect(freed).toEqual([11 * CS, 5 * CS]);
    expect(map.lookup(64).type).toBe(ClusterType.Unallocated);
  });

  it('counts unallocated runs across empty L1 entries and stops at the first mapped cluster', () => {
    // 512-byte clusters: 64 entries per L2 table; an L1 of 200 entries, only 0 and 150 mapped.
    const { map } = open(200);
    map.setEntry(map.slotForWrite(3), { type: ClusterType.Normal, hostOffset: 10 * CS, copied: true });
    map.setEntry(map.slotForWrite(150 * 64 + 7), {
      type: ClusterType.ZeroPlain,
      hostOffset: 0,
      copied: false,
    });
    expect(map.unallocatedRun(0, 1000)).toBe(3);
    expect(map.unallocatedRun(3, 1000)).toBe(0);
    expect(map.unallocatedRun(1, 1000)).toBe(2);
    // From cluster 4: the rest of table 0, then L1 entries 1..149 (no table), then 7 entries.
    expect(map.unallocatedRun(4, 200 * 64)).toBe(150 * 64 + 7 - 4);
    // Bounded by max, also when it ends inside the run of empty L1 entries.
    expect(map.unallocatedRun(4, 100)).toBe(100);
    expect(map.unallocatedRun(70, 64 * 10 + 5)).toBe(64 * 10 + 5);
    // After the last mapped cluster: to the end of the L1 table, and past it.
    expect(map.unallocatedRun(150 * 64 + 8, 1e6)).toBe(1e6);
  });
});
