/** Refcounts on the in-memory device: reads, increments, deferred decrements, limits, write-back order. */
import { describe, expect, it } from 'vitest';
import { Refcounts, RefcountOverflowError } from '../../../src/engine/refcounts.ts';
import { Qcow2Error } from '../../../src/errors.ts';
import { writeRefTable } from '../../../src/format/tables.ts';
import { emptyLayout, RecordingMemory } from './layout.ts';

function open(order = 4) {
  const l = emptyLayout(9, order);
  const dev = new RecordingMemory(l.dev);
  const rc = new Refcounts(dev, {
    clusterBits: l.clusterBits,
    order,
    tableOffset: l.clusterSize,
    tableClusters: 1,
    cacheBlocks: 4,
  });
  return { ...l, rec: dev, rc };
}

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof Qcow2Error ? e.code : String(e);
  }
  return undefined;
};

describe('Refcounts', () => {
  it('reads the stored counts through the table and its block', () => {
    const { rc } = open();
    expect([0, 1, 2, 3].map((c) => rc.get(c))).toEqual([1, 1, 1, 0]);
    expect(rc.blockFor(0)).toBe(1024);
    expect(rc.blockFor(rc.entriesPerBlock)).toBe(0); // no block yet: the allocator's business
  });

  it('defers decrements: the effective count drops at once, the stored one after applyDecrements', () => {
    const { rc } = open();
    rc.increment(3, 2);
    rc.decrement(3, 2);
    expect(rc.get(3)).toBe(0);
    expect(rc.stored(3)).toBe(2);
    expect(rc.isFree(3)).toBe(false); // not reusable while a table on disk may point at it
    expect(rc.applyDecrements()).toEqual([3]);
    expect(rc.isFree(3)).toBe(true);
  });

  it('refuses an underflow (corruption, with the offset) and an overflow of the width', () => {
    const { rc } = open();
    expect(codeOf(() => rc.decrement(3, 1))).toBe('REFCOUNT_UNDERFLOW');
    const narrow = open(0).rc; // 1-bit refcounts
    expect(narrow.wouldOverflow(0, 1)).toBe(true);
    expect(() => narrow.increment(0, 1)).toThrow(RefcountOverflowError);
  });

  it('writes the blocks, flushes, then the table', () => {
    const { rc, rec } = open();
    rc.installBlock(1, 5 * 512, new Uint8Array(512));
    rc.increment(3, 1);
    rc.writeBack();
    expect(rec.log).toEqual(['write 1024', 'write 2560', 'flush', 'write 512']);
    expect(rc.isDirty()).toBe(false);
  });

  it('reports a misaligned refcount block offset as corruption', () => {
    const { rc } = open();
    expect(rc.tablePlace()).toEqual({ offset: 512, bytes: 512 });
    const l = emptyLayout(10, 4); // 1 KiB clusters: a 512-byte offset is not aligned
    const table = new Uint8Array(1024);
    writeRefTable(table, 0, 2048 + 512);
    l.dev.write(table, 1024);
    const fresh = new Refcounts(l.dev, {
      clusterBits: 10,
      order: 4,
      tableOffset: 1024,
      tableClusters: 1,
      cacheBlocks: 4,
    });
    expect(codeOf(() => fresh.get(0))).toBe('CORRUPT_REFTABLE');
  });
});
