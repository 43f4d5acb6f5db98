/**
 * Replaying a write log onto a copy of the starting image: the whole log (the image as the run
 * left it), a prefix, or a crash state (what was durable at the last flush, plus some of the writes
 * issued since, one of them perhaps torn at sector granularity). One working buffer is reused
 * across states: rebuilding a state costs a copy of the durable image plus the state's own writes.
 */
import type { LogEntry, WriteLog } from './log-format.ts';

/** A crash state: the entries issued before the crash and which of the unflushed ones landed. */
export interface CrashState {
  /** Entries [0, crashAt) of the log were issued before the crash. */
  crashAt: number;
  /** Entries [0, durableTo) are durable for certain: durableTo is just past the last FLUSH before crashAt (0: none). */
  durableTo: number;
  /** Positions in [durableTo, crashAt) of the writes and discards that reached the disk, ascending. */
  landed: number[];
  /** One landed write torn: only these of its sectors (indexes within the write) reached the disk. */
  torn?: { at: number; sectors: number[] };
  /** How the generator made it ('flush', 'prefix', 'subset', 'torn', 'sample'). */
  how: string;
}

/** A growable byte image; `length` is the file's length. */
export class ImageBuffer {
  bytes: Uint8Array;
  length: number;

  constructor(initial: Uint8Array, capacity = initial.length) {
    this.bytes = new Uint8Array(Math.max(capacity, initial.length));
    this.bytes.set(initial);
    this.length = initial.length;
  }

  private ensure(n: number): void {
    if (n <= this.bytes.length) return;
    const next = new Uint8Array(Math.max(n, this.bytes.length * 2));
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }

  write(data: Uint8Array, offset: number): void {
    const end = offset + data.length;
    this.ensure(end);
    if (offset > this.length) this.bytes.fill(0, this.length, offset);
    this.bytes.set(data, offset);
    if (end > this.length) this.length = end;
  }

  /**
   * A discard punches a hole: the range reads as zeros (as file-posix's discard on a file). Past
   * the end it grows the file (the recording device logs a truncate as a discard).
   */
  discard(offset: number, length: number): void {
    const end = offset + length;
    this.ensure(end);
    this.bytes.fill(0, Math.min(offset, this.length), end);
    if (end > this.length) this.length = end;
  }

  /** Make this buffer a copy of another (no allocation when it fits). */
  copyFrom(other: ImageBuffer): void {
    this.ensure(other.length);
    this.bytes.set(other.bytes.subarray(0, other.length));
    if (this.length > other.length) this.bytes.fill(0, other.length, this.length);
    this.length = other.length;
  }

  view(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

export function applyEntry(img: ImageBuffer, e: LogEntry, sectorSize: number, sectors?: number[]): void {
  if (e.kind === 'write') {
    if (!sectors) img.write(e.data, e.offset);
    else
      for (const s of sectors)
        img.write(e.data.subarray(s * sectorSize, (s + 1) * sectorSize), e.offset + s * sectorSize);
  } else if (e.kind === 'discard') img.discard(e.offset, e.length);
}

/** The image after entries [from, to) of the log, applied to `img` in order. */
export function applyRange(img: ImageBuffer, log: WriteLog, from: number, to: number): void {
  for (let i = from; i < to; i++) applyEntry(img, log.entries[i], log.sectorSize);
}

/**
 * Builds crash states of one log over one starting image, keeping the durable image of the current
 * flush segment so consecutive states of a segment cost one copy each.
 */
export class Replayer {
  readonly log: WriteLog;
  private readonly durable: ImageBuffer;
  private durableAt = 0;
  private readonly start: Uint8Array;
  readonly work: ImageBuffer;

  constructor(start: Uint8Array, log: WriteLog) {
    this.log = log;
    this.start = start;
    let capacity = start.length;
    for (const e of log.entries)
      if (e.kind === 'write') capacity = Math.max(capacity, e.offset + e.data.length);
      else if (e.kind === 'discard') capacity = Math.max(capacity, e.offset + e.length);
    this.durable = new ImageBuffer(start, capacity);
    this.work = new ImageBuffer(start, capacity);
  }

  private durableUpTo(n: number): void {
    if (n < this.durableAt) {
      this.durable.copyFrom(new ImageBuffer(this.start));
      this.durableAt = 0;
    }
    applyRange(this.durable, this.log, this.durableAt, n);
    this.durableAt = n;
  }

  /** The state's image, in `work` (valid until the next call). */
  build(state: CrashState): Uint8Array {
    this.durableUpTo(state.durableTo);
    this.work.copyFrom(this.durable);
    for (const at of state.landed) {
      const sectors = state.torn?.at === at ? state.torn.sectors : undefined;
      applyEntry(this.work, this.log.entries[at], this.log.sectorSize, sectors);
    }
    return this.work.view();
  }
}
