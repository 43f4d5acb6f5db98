/**
 * `qcow2 bench [-c N] [-d DEPTH] [-f fmt] [-n] [-o OFF] [-s SIZE] [-S STEP] [-t CACHE] [-w]
 * [--pattern=N] [--flush-interval=N] [--no-drain] [-q] FILE` as qemu-img bench: DEPTH requests
 * in flight (engine/aio.ts; at depth 1, the synchronous path). Offsets advance by STEP and wrap at
 * the image size, as qemu-img bench does. Timing excludes the final close.
 */
import { Qcow2Error } from '../errors.ts';
import { openImage } from '../open.ts';
import { getopt, has, last, parseFormat, parseSize, UsageError } from './args.ts';
import { closeQuietly, type Io } from './common.ts';
import { requestsFor, type AsyncRequests } from '../engine/aio.ts';

export async function cmdBench(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':hc:d:f:ni:o:qs:S:t:wU', [
    { name: 'pattern', arg: 'required' },
    { name: 'flush-interval', arg: 'required' },
    { name: 'no-drain', arg: 'none' },
    { name: 'image-opts', arg: 'none' },
    { name: 'object', arg: 'required' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const int = (key: string, dflt: number, what: string): number => {
    const v = last(p, key);
    if (v === undefined) return dflt;
    if (!/^[0-9]+$/.test(v) || Number(v) < 1) throw new UsageError(`Invalid ${what} specified`, false);
    return Number(v);
  };
  const size = (key: string, dflt: number, what: string): number => {
    const v = last(p, key);
    if (v === undefined) return dflt;
    const n = parseSize(v);
    if (typeof n !== 'number') throw new UsageError(`Invalid ${what} specified`, false);
    return n;
  };
  const count = int('c', 75000, 'request count');
  const depth = int('d', 64, 'queue depth');
  const bufSize = size('s', 4096, 'buffer size');
  const step = size('S', bufSize, 'step size');
  const offset0 = size('o', 0, 'offset');
  const write = has(p, 'w');
  const pv = last(p, 'pattern');
  const pattern = pv === undefined ? 0 : Number(pv);
  if (!Number.isInteger(pattern) || pattern < 0 || pattern > 255)
    throw new UsageError('Invalid pattern byte specified', false);
  const flushInterval = int('flush-interval', 0, 'flush interval');
  if ((has(p, 'flush-interval') || has(p, 'no-drain')) && !write) {
    throw new UsageError('--flush-interval is only available in write tests', false);
  }
  const cache = last(p, 't') ?? 'writeback';
  if (!['none', 'writeback', 'writethrough', 'directsync', 'unsafe'].includes(cache)) {
    throw new UsageError(`Invalid cache mode: ${cache}`, false);
  }
  const d = openImage(p.operands[0]!, {
    format: parseFormat(last(p, 'f')),
    readOnly: !write,
    sync: cache !== 'unsafe',
    forceShare: has(p, 'U') || undefined,
  });
  try {
    const imageSize = d.size;
    if (offset0 + bufSize > imageSize && imageSize > 0)
      throw new Qcow2Error('OUT_OF_RANGE', 'Request would exceed the image size');
    if (!has(p, 'q')) {
      io.out(
        `Sending ${count} ${write ? 'write' : 'read'} requests, ${bufSize} bytes each, ${depth} in parallel ` +
          `(starting at offset ${offset0}, step size ${step})\n`,
      );
      if (flushInterval) io.out(`Sending flush every ${flushInterval} requests\n`);
    }
    // The buffers, filled, and the request queue are made before the timer starts, as qemu-img
    // bench fills its buffers before its first gettimeofday: both time the requests alone.
    const bufs = Array.from({ length: Math.max(1, Math.min(depth, count)) }, () =>
      new Uint8Array(bufSize).fill(write ? pattern : 0),
    );
    const q = depth === 1 ? undefined : requestsFor(d);
    const t0 = process.hrtime.bigint();
    if (q === undefined) {
      // One request at a time: the engine's synchronous path, nothing to overlap.
      const buf = bufs[0]!;
      let off = offset0;
      for (let i = 0; i < count; i++) {
        if (off + bufSize > imageSize) off = 0;
        if (write) d.write(off, buf);
        else d.readInto(buf, off);
        if (flushInterval && (i + 1) % flushInterval === 0) d.flush();
        off = imageSize === 0 ? 0 : (off + step) % imageSize;
      }
      if (write && cache === 'writethrough') d.flush();
    } else {
      await inFlight(q, bufs, {
        count,
        depth,
        bufSize,
        step,
        offset0,
        imageSize,
        write,
        pattern,
        flushInterval,
      });
      if (write && cache === 'writethrough') d.flush();
    }
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    if (!has(p, 'q')) io.out(`Run completed in ${sec.toFixed(3)} seconds.\n`);
    return 0;
  } finally {
    closeQuietly(d);
  }
}

interface Loop {
  count: number;
  depth: number;
  bufSize: number;
  step: number;
  offset0: number;
  imageSize: number;
  write: boolean;
  pattern: number;
  flushInterval: number;
}

/**
 * qemu-img bench's loop: `depth` requests in flight, each with its own buffer of `bufs` (qemu-img
 * allocates depth x size); a completed request's slot takes the next offset at once. Requests submitted in
 * one turn of the event loop start together (engine/aio.ts merges adjacent ones). Every
 * --flush-interval requests a flush is sent once the requests in flight complete (with
 * --no-drain, qemu-img sends it without waiting; the engine's flush order needs the drain).
 */
async function inFlight(q: AsyncRequests, bufs: Uint8Array[], o: Loop): Promise<void> {
  let off = o.offset0;
  let sent = 0;
  let running = 0;
  let limit = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  // One pair of completion handlers per slot, made once: nothing but the request per request.
  const slot = (buf: Uint8Array) => {
    const s = {
      buf,
      done: (): void => {
        running--;
        if (failure === undefined && sent < limit) next(s);
        else if (running === 0) wake?.();
      },
      failed: (e: unknown): void => {
        running--;
        failure ??= e;
        if (running === 0) wake?.();
      },
    };
    return s;
  };
  const next = (s: ReturnType<typeof slot>): void => {
    if (off + o.bufSize > o.imageSize) off = 0;
    const at = off;
    off = o.imageSize === 0 ? 0 : (off + o.step) % o.imageSize;
    sent++;
    running++;
    (o.write ? q.write(at, s.buf) : q.readInto(s.buf, at)).then(s.done, s.failed);
  };
  const slots = bufs.map(slot);
  while (sent < o.count) {
    limit = o.flushInterval ? Math.min(o.count, sent + o.flushInterval - (sent % o.flushInterval)) : o.count;
    for (const s of slots) if (sent < limit) next(s);
    await new Promise<void>((r) => (wake = r));
    if (failure !== undefined) throw failure;
    if (o.flushInterval && sent % o.flushInterval === 0) await q.flush();
  }
}
