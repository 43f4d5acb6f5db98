/**
 * blkdebug's breakpoints (block/blkdebug.c: blkdebug_debug_breakpoint, suspend_request,
 * resume_req_by_tag): `break EVENT TAG` suspends the next request that raises EVENT there, until
 * `resume TAG` (or `remove_break TAG`) lets it go on.
 *
 * The engine is synchronous, so a request cannot stop in the middle of its call stack. What stops
 * instead is everything it does to the device below from the event on: its writes, truncates,
 * flushes and later events are held, in order, in the suspension, and replayed on resume — the
 * file sees nothing of the request's rest until then, as with QEMU's yielded coroutine. Reads
 * (of any request) see the held writes, as the engine's metadata in memory already does. A later
 * event of a replayed request may meet another breakpoint: the rest of the request is then held
 * again, under the new tag. A held truncate only ever grows the file when replayed. Injected errors (`[inject-error]`) of held operations are raised on
 * replay, and fail the suspended request, as they would when its coroutine goes on.
 */
import type { BlockDevice } from './device.ts';

export type HeldOp =
  | { kind: 'write'; buf: Uint8Array; offset: number }
  | { kind: 'truncate'; length: number }
  | { kind: 'flush' }
  | { kind: 'event'; name: string };

/** A request suspended at a breakpoint: what it still has to do to the device. */
export class Suspension {
  ops: HeldOp[] = [];
  /** Called once the request's held operations have all reached the device (or one failed). */
  onDone: ((err?: unknown) => void) | undefined;
  constructor(readonly tag: string) {}
}

interface Breakpoint {
  event: string;
  tag: string;
}

/** The breakpoints of one blkdebug node and the requests they hold. */
export class Breakpoints {
  private readonly points: Breakpoint[] = [];
  /** Suspended requests, the newest first (QLIST_INSERT_HEAD). */
  private readonly suspended: Suspension[] = [];
  /** The suspension of the request running now, which holds its device operations. */
  private current: Suspension | undefined;
  /** Where "blkdebug: Suspended request ..." goes (qemu-io sets its output; default stdout). */
  print: (s: string) => void = (s) => process.stdout.write(s);

  constructor(private readonly dev: BlockDevice) {}

  get any(): boolean {
    return this.points.length > 0 || this.suspended.length > 0;
  }

  add(event: string, tag: string): void {
    this.points.unshift({ event, tag });
  }

  /** Holding: the running request is suspended, so its device operations wait. */
  get holding(): boolean {
    return this.current !== undefined;
  }

  hold(op: HeldOp): void {
    this.current!.ops.push(op.kind === 'write' ? { ...op, buf: op.buf.slice() } : op);
  }

  /** At an event: a breakpoint on it suspends the running request (and goes away). */
  event(name: string): void {
    const i = this.points.findIndex((p) => p.event === name);
    if (i < 0) return;
    const [p] = this.points.splice(i, 1);
    const s = new Suspension(p!.tag);
    this.suspended.unshift(s);
    this.current = s;
    this.print(`blkdebug: Suspended request '${s.tag}'\n`);
  }

  /** The suspension the request that just returned ran into, if any (and stop holding). */
  take(): Suspension | undefined {
    const c = this.current;
    this.current = undefined;
    return c;
  }

  isSuspended(tag: string): boolean {
    return this.suspended.some((s) => s.tag === tag);
  }

  /** resume_req_by_tag: the newest request suspended under `tag` (every one: `all`) goes on. */
  resume(tag: string, all = false): boolean {
    let found = false;
    for (let s = this.find(tag); s; s = all ? this.find(tag) : undefined) {
      found = true;
      this.print(`blkdebug: Resuming request '${s.tag}'\n`);
      this.suspended.splice(this.suspended.indexOf(s), 1);
      this.replay(s);
    }
    return found;
  }

  /** blkdebug_debug_remove_breakpoint: drops the breakpoints and resumes the requests of `tag`. */
  remove(tag: string): boolean {
    let found = false;
    for (let i = this.points.length - 1; i >= 0; i--) {
      if (this.points[i]!.tag === tag) {
        this.points.splice(i, 1);
        found = true;
      }
    }
    // QEMU's resume_req_by_tag(all) looks again after each resumed request and ends with ENOENT
    // when none is left: only a removed breakpoint makes remove_break succeed.
    this.resume(tag, true);
    return found;
  }

  /** Reads see the held writes (oldest suspension first, each in its order). */
  overlay(buf: Uint8Array, offset: number): void {
    const all = [...this.suspended].reverse();
    if (this.current && !all.includes(this.current)) all.push(this.current);
    for (const s of all) {
      for (const op of s.ops) {
        if (op.kind !== 'write') continue;
        const from = Math.max(offset, op.offset);
        const to = Math.min(offset + buf.length, op.offset + op.buf.length);
        if (from < to) buf.set(op.buf.subarray(from - op.offset, to - op.offset), from - offset);
      }
    }
  }

  /** The device's length with the held writes and truncates applied. */
  size(inner: number): number {
    let n = inner;
    for (const s of [...this.suspended].reverse()) {
      for (const op of s.ops) {
        if (op.kind === 'truncate') n = op.length;
        else if (op.kind === 'write') n = Math.max(n, op.offset + op.buf.length);
      }
    }
    return n;
  }

  /** Close: every held operation reaches the device (nothing written is lost), silently. */
  releaseAll(): void {
    this.points.length = 0;
    while (this.suspended.length > 0) {
      const s = this.suspended.pop()!;
      s.onDone = undefined;
      this.replay(s);
    }
  }

  private find(tag: string): Suspension | undefined {
    return this.suspended.find((s) => s.tag === tag);
  }

  /** The request goes on from where it stopped; a later breakpoint may stop it again. */
  private replay(s: Suspension): void {
    const ops = s.ops;
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      try {
        if (op.kind === 'write') this.dev.write(op.buf, op.offset);
        // A held truncate grows the file only: requests that ran meanwhile may have written
        // past the length it had then (the engine truncates to cover clusters it allocated).
        else if (op.kind === 'truncate') {
          if (op.length > this.dev.size()) this.dev.truncate(op.length);
        } else if (op.kind === 'flush') this.dev.flush();
        else this.dev.event?.(op.name);
      } catch (e) {
        this.current = undefined;
        s.onDone?.(e);
        return;
      }
      const again = this.take();
      if (again) {
        // Suspended again: the rest waits under the new tag, and completes the same request.
        again.ops = ops.slice(i + 1);
        again.onDone = s.onDone;
        return;
      }
    }
    s.onDone?.();
  }
}
