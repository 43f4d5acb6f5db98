/**
 * The reference disk: a plain, sparse, in-memory byte store. No qcow2 in it: a Map from chunk
 * index to bytes (absent chunks read as zeros, so a 1 GiB disk costs nothing until written) and a
 * size. Chunks are shared copy-on-write between a disk and its clones (snapshot copies), and a
 * whole chunk filled with one byte is one shared read-only chunk per byte value (a pattern fill of
 * many MiB, a backing file's dense fill, costs no copy until a later write changes part of it).
 */

import { isUniform } from './compare-bytes.ts';

/** A run of identical bytes: what `read -P pattern offset length` checks. */
export interface PatternRun {
  offset: number;
  length: number;
  pattern: number;
}

const CHUNK_BITS = 16;
const CHUNK_SIZE = 1 << CHUNK_BITS;

/** Chunks of one repeated byte, by value: shared by every disk, never written (never `owned`). */
const uniformChunks: (Uint8Array | undefined)[] = [];
function uniformChunk(byte: number): Uint8Array {
  return (uniformChunks[byte] ??= new Uint8Array(CHUNK_SIZE).fill(byte));
}

export class ReferenceDisk {
  private chunks: Map<number, Uint8Array>;
  /** Chunks this disk may mutate in place (not shared with a clone). */
  private owned: Set<number>;
  private sizeBytes: number;

  constructor(size: number, chunks: Map<number, Uint8Array> = new Map()) {
    this.sizeBytes = size;
    this.chunks = chunks;
    this.owned = new Set();
  }

  get size(): number {
    return this.sizeBytes;
  }

  /** An independent copy sharing chunks until either side writes. */
  clone(): ReferenceDisk {
    this.owned.clear();
    return new ReferenceDisk(this.sizeBytes, new Map(this.chunks));
  }

  read(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.copyOut(offset, out, false);
    return out;
  }

  /** `read` into a caller's buffer (every byte of `out` written: zeros where nothing is stored). */
  readInto(offset: number, out: Uint8Array): void {
    this.copyOut(offset, out, true);
  }

  private copyOut(offset: number, out: Uint8Array, zeroHoles: boolean): void {
    this.assertRange(offset, out.length);
    this.forEachChunk(offset, out.length, (index, from, to, outAt) => {
      const chunk = this.chunks.get(index);
      if (chunk) out.set(chunk.subarray(from, to), outAt);
      else if (zeroHoles) out.fill(0, outAt, outAt + (to - from));
    });
  }

  /** Store bytes at an offset (bulk copies into the chunks). */
  write(offset: number, data: Uint8Array): void {
    this.assertRange(offset, data.length);
    this.forEachChunk(offset, data.length, (index, from, to, outAt) => {
      this.writableChunk(index).set(data.subarray(outAt, outAt + (to - from)), from);
    });
  }

  /**
   * Store bytes made in place: `make(dst, dstAt, from, to)` writes bytes [from, to) of the range
   * (counted from `offset`) into `dst` at `dstAt`, one chunk's piece at a time (a stamped write's
   * bytes go straight into the chunks, without a buffer of the whole write copied in).
   */
  writeWith(
    offset: number,
    length: number,
    make: (dst: Uint8Array, dstAt: number, from: number, to: number) => void,
  ): void {
    this.assertRange(offset, length);
    this.forEachChunk(offset, length, (index, from, to, outAt) => {
      make(this.writableChunk(index), from, outAt, outAt + (to - from));
    });
  }

  /**
   * Fill a range with one byte value (0 writes zeros and frees whole chunks; another value makes
   * whole chunks the shared chunk of that byte, copied by the first write into one).
   */
  fill(offset: number, length: number, byte: number): void {
    this.assertRange(offset, length);
    this.forEachChunk(offset, length, (index, from, to) => {
      if (from === 0 && to === CHUNK_SIZE) {
        if (byte === 0) this.chunks.delete(index);
        else this.chunks.set(index, uniformChunk(byte & 0xff));
        this.owned.delete(index);
        return;
      }
      if (byte === 0 && !this.chunks.has(index)) return;
      this.writableChunk(index).fill(byte, from, to);
    });
  }

  /** Grow (new bytes read as zeros) or shrink (bytes beyond the end are gone). */
  resize(newSize: number): void {
    if (newSize < this.sizeBytes) {
      const lastChunk = Math.floor(newSize / CHUNK_SIZE);
      for (const index of [...this.chunks.keys()]) {
        if (index > lastChunk) {
          this.chunks.delete(index);
          this.owned.delete(index);
        }
      }
      const tail = newSize % CHUNK_SIZE;
      if (this.chunks.has(lastChunk)) this.writableChunk(lastChunk).fill(0, tail);
    }
    this.sizeBytes = newSize;
  }

  /** The range as runs of identical bytes, in order; zero runs included. */
  runs(offset: number, length: number): PatternRun[] {
    this.assertRange(offset, length);
    const runs: PatternRun[] = [];
    const push = (at: number, len: number, pattern: number): void => {
      const last = runs[runs.length - 1];
      if (last && last.pattern === pattern && last.offset + last.length === at) last.length += len;
      else runs.push({ offset: at, length: len, pattern });
    };
    this.forEachChunk(offset, length, (index, from, to, outAt) => {
      const chunk = this.chunks.get(index);
      if (!chunk || chunk === uniformChunks[chunk[0]]) {
        push(offset + outAt, to - from, chunk ? chunk[0] : 0);
        return;
      }
      let start = from;
      for (let i = from + 1; i <= to; i++) {
        if (i === to || chunk[i] !== chunk[start]) {
          push(offset + outAt + (start - from), i - start, chunk[start]);
          start = i;
        }
      }
    });
    return runs;
  }

  /** Whether the range reads as zeros (absent chunks cost nothing; present ones are compared natively). */
  isZeroRange(offset: number, length: number): boolean {
    this.assertRange(offset, length);
    let zero = true;
    this.forEachChunk(offset, length, (index, from, to) => {
      const chunk = this.chunks.get(index);
      if (zero && chunk && !isUniform(chunk, 0, from, to)) zero = false;
    });
    return zero;
  }

  private writableChunk(index: number): Uint8Array {
    let chunk = this.chunks.get(index);
    if (!chunk) {
      chunk = new Uint8Array(CHUNK_SIZE);
      this.chunks.set(index, chunk);
      this.owned.add(index);
    } else if (!this.owned.has(index)) {
      chunk = chunk.slice();
      this.chunks.set(index, chunk);
      this.owned.add(index);
    }
    return chunk;
  }

  private forEachChunk(
    offset: number,
    length: number,
    visit: (index: number, from: number, to: number, outAt: number) => void,
  ): void {
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const index = Math.floor(at / CHUNK_SIZE);
      const from = at - index * CHUNK_SIZE;
      const to = Math.min(CHUNK_SIZE, end - index * CHUNK_SIZE);
      visit(index, from, to, at - offset);
      at = index * CHUNK_SIZE + to;
    }
  }

  private assertRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`bad range ${offset}+${length}`);
    }
    if (offset + length > this.sizeBytes) {
      throw new RangeError(`range ${offset}+${length} beyond the reference disk (${this.sizeBytes} bytes)`);
    }
  }
}
