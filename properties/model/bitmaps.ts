/**
 * The model of an image's persistent dirty bitmaps: for each bitmap its granularity, whether it is
 * enabled, and its dirty set as bit indices (bit k covers guest bytes [k·g, (k+1)·g)). The rules
 * are QEMU 7.2's, measured (docs/bitmaps.md):
 * - every guest request that changes the disk (write, zero write with or without unmap, discard —
 *   even of an unallocated range or of a partial cluster that stays unchanged — compressed write,
 *   writes of a qemu-io turn) sets the bits of its whole range rounded out to the granularity, in
 *   every *enabled* bitmap; disabled bitmaps never change; reads, flushes, snapshot create/delete
 *   set nothing;
 * - a resize keeps ceil(size / g) bits: a shrink drops the bits from ceil(newSize / g) on (a bit
 *   half beyond the new end stays), a grow adds clean bits;
 * - `qemu-img bitmap --merge SRC DST` sets in DST every guest range dirty in SRC, rounded out to
 *   DST's granularity.
 * It knows nothing of where the bits live in the image (that is the engine's business).
 */

/** A bitmap the image starts with (`qemu-img bitmap --add -g G [--disable] IMG NAME`). */
export interface BitmapLayout {
  name: string;
  /** log2 of the granularity in bytes: 9 (512 B) .. 31 (2 GiB); the harness draws 9..24. */
  granularityBits: number;
  disabled: boolean;
}

/** Half-open intervals [start, end) of integers, sorted and disjoint. Small on purpose. */
export class IntervalSet {
  private spans: [number, number][] = [];

  add(start: number, end: number): void {
    if (end <= start) return;
    const out: [number, number][] = [];
    let s = start;
    let e = end;
    for (const [a, b] of this.spans) {
      if (b < s || a > e) out.push([a, b]);
      else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    out.push([s, e]);
    out.sort((x, y) => x[0] - y[0]);
    this.spans = out;
  }

  /** Keep only [0, end). */
  truncate(end: number): void {
    this.spans = this.spans.filter(([a]) => a < end).map(([a, b]): [number, number] => [a, Math.min(b, end)]);
  }

  clear(): void {
    this.spans = [];
  }

  get intervals(): readonly (readonly [number, number])[] {
    return this.spans;
  }

  clone(): IntervalSet {
    const c = new IntervalSet();
    c.spans = this.spans.map(([a, b]): [number, number] => [a, b]);
    return c;
  }
}

export class BitmapModel {
  readonly name: string;
  readonly granularity: number;
  enabled: boolean;
  /** Dirty bits (indices). */
  readonly dirty: IntervalSet;

  constructor(name: string, granularityBits: number, enabled: boolean, dirty = new IntervalSet()) {
    this.name = name;
    this.granularity = 2 ** granularityBits;
    this.enabled = enabled;
    this.dirty = dirty;
  }

  get granularityBits(): number {
    return Math.log2(this.granularity);
  }

  /** Set the bits covering guest bytes [offset, offset + length), rounded out, below `size`. */
  markBytes(offset: number, length: number, size: number): void {
    if (length <= 0) return;
    const g = this.granularity;
    const bits = Math.ceil(size / g);
    this.dirty.add(Math.floor(offset / g), Math.min(bits, Math.ceil((offset + length) / g)));
  }

  /** The dirty guest ranges [offset, length], clipped at `size` (what qemu-nbd exports). */
  dirtyRanges(size: number): { offset: number; length: number }[] {
    const g = this.granularity;
    const out: { offset: number; length: number }[] = [];
    for (const [a, b] of this.dirty.intervals) {
      const start = a * g;
      const end = Math.min(b * g, size);
      if (end > start) out.push({ offset: start, length: end - start });
    }
    return out;
  }

  clone(): BitmapModel {
    return new BitmapModel(this.name, this.granularityBits, this.enabled, this.dirty.clone());
  }
}

/** The image's bitmaps, in directory order (QEMU appends new ones at the end). */
export class BitmapsModel {
  readonly list: BitmapModel[] = [];

  constructor(layouts: readonly BitmapLayout[] = []) {
    for (const b of layouts) this.add(b.name, b.granularityBits, b.disabled);
  }

  get size(): number {
    return this.list.length;
  }

  get(name: string): BitmapModel | undefined {
    return this.list.find((b) => b.name === name);
  }

  require(name: string): BitmapModel {
    const b = this.get(name);
    if (!b) throw new Error(`harness: no bitmap '${name}' in the model`);
    return b;
  }

  add(name: string, granularityBits: number, disabled: boolean): void {
    this.list.push(new BitmapModel(name, granularityBits, !disabled));
  }

  remove(name: string): void {
    const i = this.list.findIndex((b) => b.name === name);
    if (i >= 0) this.list.splice(i, 1);
  }

  /** A guest request changed [offset, offset + length): every enabled bitmap records it. */
  record(offset: number, length: number, size: number): void {
    for (const b of this.list) if (b.enabled) b.markBytes(offset, length, size);
  }

  /** The disk is now `newSize` bytes: bits from ceil(newSize / g) on are dropped. */
  resize(newSize: number): void {
    for (const b of this.list) b.dirty.truncate(Math.ceil(newSize / b.granularity));
  }

  /** DST |= SRC, rounded out to DST's granularity. */
  merge(source: string, target: string, size: number): void {
    const src = this.require(source);
    const dst = this.require(target);
    for (const r of src.dirtyRanges(size)) dst.markBytes(r.offset, r.length, size);
  }

  /** A name not in use (b0, b1, …). */
  nextName(): string {
    for (let i = 0; ; i++) if (!this.get(`b${i}`)) return `b${i}`;
  }

  clone(): BitmapsModel {
    const c = new BitmapsModel();
    for (const b of this.list) c.list.push(b.clone());
    return c;
  }
}
