/**
 * `qcow2 bench [-c N] [-d DEPTH] [-f fmt] [-n] [-o OFF] [-s SIZE] [-S STEP] [-t CACHE] [-w]
 * [--pattern=N] [--flush-interval=N] [--no-drain] [-q] FILE` as qemu-img bench. The engine is
 * synchronous, so the queue depth is reported but requests run one after another. Offsets advance
 * by STEP and wrap at the image size, as qemu-img bench does. Timing excludes the final close.
 */
import { Qcow2Error } from '../errors.ts';
import { openImage } from '../open.ts';
import { getopt, has, last, parseFormat, parseSize, UsageError } from './args.ts';
import { closeQuietly, type Io } from './common.ts';

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
    const buf = new Uint8Array(bufSize).fill(pattern);
    const rbuf = new Uint8Array(bufSize);
    const t0 = process.hrtime.bigint();
    let off = offset0;
    for (let i = 0; i < count; i++) {
      if (off + bufSize > imageSize) off = 0;
      if (write) d.write(off, buf);
      else d.readInto(rbuf, off);
      if (flushInterval && (i + 1) % flushInterval === 0) d.flush();
      off = imageSize === 0 ? 0 : (off + step) % imageSize;
    }
    if (write && cache === 'writethrough') d.flush();
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    if (!has(p, 'q')) io.out(`Run completed in ${sec.toFixed(3)} seconds.\n`);
    return 0;
  } finally {
    closeQuietly(d);
  }
}
