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
  const switches: Array<{
    next: { offset: number; clusters: number };
    old: { offset: number; clusters: number };
  }> = [];
  const alloc = new Allocator(l.dev, rc, {
    switchRefTable: (next, old) => {
      switches.push({ next, old });
      for (let c = 0; c < old.clusters; c++) rc.decrement(old.offset / 512 + c, 1);
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

  it('creates a self-describing refcount block for a new range', () => {
    const { rc, alloc } = open();
    const E = rc.entriesPerBlock; // 256 clusters per 512-byte block of 16-bit counts
    for (let i = 3; i < E; i++) alloc.alloc(1);
    const next = alloc.alloc(1);
    // Block 1 sits at the first cluster it covers and counts itself; the data goes after it.
    expect(rc.blockFor(E)).toBe(E * 512);
    expect(next).toBe((E + 1) * 512);
    expect(rc.get(E)).toBe(1);
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
    expect(switches[0]!.old).toEqual({ offset: 512, clusters: 1 });
    expect(rc.tablePlace().offset).toBe(switches.at(-1)!.next.offset);
    expect(rc.tableEntries).toBeGreaterThan(64);
  });
});
