/** TableCache on the in-memory device: hits, misses, LRU eviction, write-back and its dependency. */
import { describe, expect, it } from 'vitest';
import { TableCache, type WriteBackTarget } from '../../../src/engine/cache.ts';
import { MemoryDevice } from '../../../src/io/device.ts';
import { RecordingMemory } from './layout.ts';

const T = 512;

function device(tables: number): RecordingMemory {
  const mem = new MemoryDevice();
  for (let i = 0; i < tables; i++) mem.write(new Uint8Array(T).fill(i + 1), i * T);
  return new RecordingMemory(mem);
}

describe('TableCache', () => {
  it('reads a table on a miss and serves it from memory on a hit', () => {
    const dev = device(2);
    const c = new TableCache(dev, T, 4, 'test');
    expect(c.get(T)[0]).toBe(2);
    expect(c.get(T)[0]).toBe(2);
    expect(c.stats).toEqual({ hits: 1, misses: 1, writes: 0 });
  });

  it('evicts the least recently used table, writing it back when dirty', () => {
    const dev = device(4);
    const c = new TableCache(dev, T, 2, 'test');
    c.get(0)[0] = 99;
    c.markDirty(0);
    c.get(T);
    c.get(0); // 0 is now the most recently used
    c.get(2 * T); // evicts T (clean): nothing written
    expect(dev.log).toEqual([]);
    expect(c.has(T)).toBe(false);
    c.get(3 * T); // evicts 0 (dirty): written
    expect(dev.log).toEqual(['write 0']);
    const back = new Uint8Array(1);
    dev.read(back, 0);
    expect(back[0]).toBe(99);
  });

  it('writes its dependency and flushes before writing any of its own tables', () => {
    const dev = device(2);
    const order: string[] = [];
    const dep: WriteBackTarget & { dirty: boolean } = {
      dirty: true,
      isDirty() {
        return this.dirty;
      },
      writeBack() {
        order.push('dependency');
        this.dirty = false;
      },
    };
    const c = new TableCache(dev, T, 4, 'test');
    c.setDependency(dep);
    c.put(T, new Uint8Array(T));
    c.writeBack();
    expect(order).toEqual(['dependency']);
    expect(dev.log).toEqual(['flush', `write ${T}`]);
  });

  it('after dependOnFlush, flushes once before its next table write (write-back or eviction), unless flushed() came first', () => {
    const dev = device(4);
    const c = new TableCache(dev, T, 2, 'test');
    c.put(0, new Uint8Array(T));
    c.dependOnFlush();
    c.get(T);
    c.get(2 * T); // evicts 0 (dirty): the owed flush first
    expect(dev.log).toEqual(['flush', 'write 0']);
    c.markDirty(T);
    c.writeBack(); // nothing owed any more
    expect(dev.log).toEqual(['flush', 'write 0', `write ${T}`]);
    c.markDirty(2 * T);
    c.dependOnFlush();
    c.flushed(); // the device was flushed meanwhile
    c.writeBack();
    expect(dev.log).toEqual(['flush', 'write 0', `write ${T}`, `write ${2 * T}`]);
  });

  it('drops a discarded table unwritten, and refuses to clear dirty tables', () => {
    const dev = device(2);
    const c = new TableCache(dev, T, 4, 'test');
    c.put(0, new Uint8Array(T).fill(7));
    expect(() => c.clear()).toThrow(/dirty/);
    c.discard(0);
    c.writeBack();
    expect(dev.log).toEqual([]);
    expect(c.isDirty()).toBe(false);
  });
});
