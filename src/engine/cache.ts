/**
 * A write-back cache of cluster-sized metadata tables (L2 tables, refcount blocks), as QEMU's
 * qcow2-cache.c: fixed capacity, LRU eviction, dirty tracking, and a declared dependency — before
 * this cache writes any table, the cache it depends on is written and the device flushed. That is
 * how "refcount blocks before L2 tables" holds even when an eviction writes early. A cache may also
 * depend on a plain device flush (QEMU's qcow2_cache_depends_on_flush): the L2 cache does once an
 * entry maps data written since the last flush, so the data reaches the disk before the table.
 */
import type { BlockDevice } from '../io/device.ts';

interface Entry {
  table: Uint8Array;
  dirty: boolean;
}

export interface CacheStats {
  hits: number;
  misses: number;
  writes: number;
}

/** Something that must be written (and flushed) before a dependent cache writes. */
export interface WriteBackTarget {
  isDirty(): boolean;
  writeBack(): void;
}

export class TableCache implements WriteBackTarget {
  private readonly entries = new Map<number, Entry>(); // insertion order = LRU order
  /** The key at the most-recently-used end of `entries` (-1: not known). */
  private mru = -1;
  private dependency: WriteBackTarget | undefined;
  /** The device must be flushed before this cache writes a table (QEMU's depends_on_flush). */
  private flushFirst = false;
  readonly stats: CacheStats = { hits: 0, misses: 0, writes: 0 };

  constructor(
    private readonly dev: BlockDevice,
    private readonly tableSize: number,
    private readonly capacity: number,
    readonly name: string,
  ) {}

  /** Tables of this cache are written only after `dep` has been written and flushed. */
  setDependency(dep: WriteBackTarget | undefined): void {
    this.dependency = dep;
  }

  /** Before the next table is written, flush the device (writes made until now reach the disk first). */
  dependOnFlush(): void {
    this.flushFirst = true;
  }

  /** The device was flushed since `dependOnFlush`: no flush is owed any more. */
  flushed(): void {
    this.flushFirst = false;
  }

  /** The table at `offset`, read from the device on a miss. Callers must not keep it across calls that may evict. */
  get(offset: number): Uint8Array {
    const e = this.entries.get(offset);
    if (e) {
      this.stats.hits++;
      // Move to the most-recently-used end (unless it is there: sequential requests hit the same
      // table again and again, and a Map delete/set pair rehashes now and then).
      if (offset !== this.mru) {
        this.entries.delete(offset);
        this.entries.set(offset, e);
        this.mru = offset;
      }
      return e.table;
    }
    this.stats.misses++;
    this.dev.event?.(this.name === 'L2' ? 'l2_load' : 'refblock_load');
    const table = new Uint8Array(this.tableSize);
    this.dev.read(table, offset);
    this.insert(offset, { table, dirty: false });
    return table;
  }

  /** Install a new table (freshly allocated cluster) without reading the device. */
  put(offset: number, table: Uint8Array): Uint8Array {
    const old = this.entries.get(offset);
    if (old) this.entries.delete(offset);
    this.insert(offset, { table, dirty: true });
    return table;
  }

  markDirty(offset: number): void {
    const e = this.entries.get(offset);
    if (!e) throw new Error(`${this.name} cache: table 0x${offset.toString(16)} is not cached`);
    e.dirty = true;
  }

  has(offset: number): boolean {
    return this.entries.has(offset);
  }

  /** Forget a table (its cluster was freed): its contents will not be written. */
  discard(offset: number): void {
    this.entries.delete(offset);
    if (offset === this.mru) this.mru = -1;
  }

  isDirty(): boolean {
    for (const e of this.entries.values()) if (e.dirty) return true;
    return false;
  }

  /** Write every dirty table (after the dependency). Does not flush the device itself. */
  writeBack(): void {
    if (!this.isDirty()) return;
    this.satisfyDependency();
    // Ascending offsets: sequential writes.
    const dirty = [...this.entries].filter(([, e]) => e.dirty).sort((a, b) => a[0] - b[0]);
    for (const [off, e] of dirty) {
      this.writeEvent();
      this.dev.write(e.table, off);
      e.dirty = false;
      this.stats.writes++;
    }
  }

  /** Drop every clean entry (after a structural change that invalidates cached tables). */
  clear(): void {
    if (this.isDirty()) throw new Error(`${this.name} cache: clear() with dirty tables`);
    this.entries.clear();
    this.mru = -1;
  }

  /** QEMU's debug event for writing back a cached table (qcow2_cache_entry_flush). */
  private writeEvent(): void {
    this.dev.event?.(this.name === 'L2' ? 'l2_update' : 'refblock_update_part');
  }

  private satisfyDependency(): void {
    if (this.dependency?.isDirty()) {
      this.dependency.writeBack();
      this.dev.flush();
    } else if (this.flushFirst) this.dev.flush();
    this.flushFirst = false;
  }

  private insert(offset: number, e: Entry): void {
    this.entries.set(offset, e);
    this.mru = offset;
    if (this.entries.size <= this.capacity) return;
    // Evict the least recently used entry; a dirty one is written first (after its dependency).
    for (const [off, victim] of this.entries) {
      if (off === offset) continue;
      if (victim.dirty) {
        this.satisfyDependency();
        this.writeEvent();
        this.dev.write(victim.table, off);
        this.stats.writes++;
      }
      this.entries.delete(off);
      break;
    }
  }
}
