/** The allocator on the in-memory device: free runs, self-describing blocks, overlap guard, bytes, table growth. */
import { describe, expect, it } from 'vitest';
import { Allocator } from '../../../src/engine/allocator.ts';
import { Refcounts } from '../../../src/engine/refcounts.ts';
import { Qcow2Error } from '../../../src/errors.ts';
import { emptyLayout } from './layout.ts';

function open(metadataAt: (c: number) => string | undefined = () => undefined) {
  const l = emptyLayout(9, 4);
  const rc = new Refcounts(l.dev, {
    clusterBits: 9,
    order: 4,
    tableOffset: 512,
    tableClusters: 1,
    cacheBlocks: 8,
  });
  const switches: Array<{ next: { offset: number; clusters: number } }> = [];
  const alloc = new Allocator(l.dev, rc, {
    switchRefTable: (next) => {
      switches.push({ next });
    },
    metadataAt,
  });
  return { ...l, rc, alloc, switches };
}

describe('Allocator', () => {
  it('hands out the first free clusters with refcount 1', () => {
    const { rc, alloc } = open();
    expect(alloc.alloc(1)).toBe(3 * 512);
    expect(alloc.alloc(2)).toBe(4 * 512);
    expect([3, 4, 5, 6].map((c) => rc.get(c))).toEqual([1, 1, 1, 0]);
    expect(alloc.endCluster()).toBe(6);
  });

  it('reuses a freed cluster once its decrement is applied', () => {
    const { rc, alloc } = open();
    const a = alloc.alloc(1);
    alloc.alloc(1);
    rc.decrement(a / 512, 1);
    for (const c of rc.applyDecrements()) alloc.freed(c);
    expect(alloc.alloc(1)).toBe(a);
  });

  it('creates a self-describing refcount block for a new range, as QEMU places it', () => {
    const { rc, alloc } = open();
    const E = rc.entriesPerBlock; // 256 clusters per 512-byte block of 16-bit counts
    for (let i = 3; i < E; i++) alloc.alloc(1);
    const next = alloc.alloc(1);
    // QEMU 7.2 (checked with qemu-io): the block takes the next free cluster after the one being
    // allocated and counts itself; the search then starts again at that cluster.
    expect(rc.blockFor(E)).toBe((E + 1) * 512);
    expect(next).toBe(E * 512);
    expect(rc.get(E + 1)).toBe(1);
  });

  it('places the refcount block after a run that needs it (a request allocated together)', () => {
    const { rc, alloc } = open();
    const E = rc.entriesPerBlock;
    for (let i = 3; i < E - 10; i++) alloc.alloc(1);
    alloc.planRun(20);
    const first = alloc.allocInRun();
    const rest = Array.from({ length: 19 }, () => alloc.allocInRun());
    expect(first).toBe((E - 10) * 512);
    expect(rest).toEqual(Array.from({ length: 19 }, (_, k) => (E - 9 + k) * 512));
    expect(rc.blockFor(E)).toBe((E + 10) * 512);
  });

  it('gives back the unused clusters of a planned run', () => {
    const { rc, alloc } = open();
    alloc.planRun(4);
    const a = alloc.allocInRun();
    alloc.endRun();
    expect(rc.get(a / 512)).toBe(1);
    expect([1, 2, 3].map((k) => rc.get(a / 512 + k))).toEqual([0, 0, 0]);
    expect(alloc.alloc(1)).toBe(a + 512);
  });

  it('reuses a cluster freed since the last flush for data only after settling the frees', () => {
    const l = emptyLayout(9, 4);
    const rc = new Refcounts(l.dev, {
      clusterBits: 9,
      order: 4,
      tableOffset: 512,
      tableClusters: 1,
      cacheBlocks: 8,
    });
    let settled = 0;
    const alloc = new Allocator(l.dev, rc, {
      switchRefTable: () => {},
      metadataAt: () => undefined,
      settleFrees: () => {
        settled++;
        for (const c of rc.applyDecrements()) alloc.freed(c);
      },
    });
    const a = alloc.alloc(1);
    alloc.alloc(1);
    rc.decrement(a / 512, 1); // deferred: on disk a table may still point at it
    expect(alloc.alloc(1)).not.toBe(a); // metadata does not take it
    expect(settled).toBe(0);
    rc.decrement(a / 512 + 2, 1);
    alloc.planRun(1);
    // data does, once the frees are settled (the search cursor went back to the last free)
    expect(alloc.allocInRun()).toBe(a + 1024);
    expect(settled).toBe(1);
    expect(rc.get(a / 512 + 2)).toBe(1);
    expect(rc.get(a / 512)).toBe(0);
  });

  it('refuses to hand out a cluster that holds metadata (overlap guard)', () => {
    const { alloc } = open((c) => (c === 3 ? 'active L1 table' : undefined));
    let code: string | undefined;
    try {
      alloc.alloc(1);
    } catch (e) {
      code = (e as Qcow2Error).code;
    }
    expect(code).toBe('REFCOUNT_OVERLAP');
  });

  it('packs compressed byte ranges into one cluster, one reference each', () => {
    const { rc, alloc } = open();
    const a = alloc.allocBytes(100);
    const b = alloc.allocBytes(200);
    expect(b).toBe(a + 100);
    expect(rc.get(a / 512)).toBe(2);
    const c = alloc.allocBytes(300); // does not fit: a new cluster
    expect(Math.floor(c / 512)).not.toBe(Math.floor(a / 512));
    alloc.freed(Math.floor(c / 512));
    expect(alloc.allocBytes(10) % 512).toBe(0); // the cursor's cluster was freed: start afresh
  });

  it('relocates a full refcount table and hands the switch to its hook', () => {
    const { rc, alloc, switches } = open();
    const E = rc.entriesPerBlock;
    // One table cluster holds 64 block pointers: cover more than 64 * E clusters with large runs.
    for (let i = 0; i < 65; i++) alloc.alloc(E);
    expect(switches.length).toBeGreaterThan(0);
    expect(rc.tablePlace().offset).toBe(switches.at(-1)!.next.offset);
    expect(rc.tableEntries).toBeGreaterThan(64);
    // The old table (cluster 1) is free at once: the flushed header no longer points at it.
    expect(rc.get(1)).toBe(0);
  });
});
