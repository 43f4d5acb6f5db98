/**
 * `qcow2 dd [-f fmt] [-O output_fmt] [-U] [bs=N] [count=N] [skip=N] if=INPUT of=OUTPUT` as qemu-img
 * dd: a new OUTPUT image (default raw; default create options) of the input's size, less `skip`
 * blocks, at most `count` blocks, filled by reading the input block by block and writing every
 * block, zeros included, at the start of the output.
 */
import type { GuestDisk } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { Qcow2Image } from '../image.ts';
import { openImage } from '../open.ts';
import { getopt, last, parseFormat, parseSizeBig, UsageError } from './args.ts';
import { program } from './program.ts';
import { closeQuietly, openTarget, targetOf, type Io } from './common.ts';
import { createRaw } from './create.ts';

const INT64_MAX = 2n ** 63n - 1n;
const INT_MAX = 2n ** 31n - 1n;

/** qemu-img's cvtnum_full, with its two messages (two lines for a malformed number). */
function cvtnum(name: string, value: string, min: bigint, max: bigint): bigint {
  const r = parseSizeBig(value);
  if (!r.ok && r.error === 'invalid') {
    throw new UsageError(
      `Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for\n` +
        `${program()}: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.`,
      false,
    );
  }
  if (!r.ok || r.value > max || r.value < min)
    throw new UsageError(`Invalid ${name} specified. Must be between ${min} and ${max}.`, false);
  return r.value;
}

interface DdArgs {
  bs: bigint;
  count?: bigint;
  skip?: bigint;
  input?: string;
  output?: string;
}

function parseOperands(operands: readonly string[]): DdArgs {
  const a: DdArgs = { bs: 512n };
  for (const op of operands) {
    const eq = op.indexOf('=');
    const key = eq < 0 ? undefined : op.slice(0, eq);
    const value = op.slice(eq + 1);
    if (key === 'bs') a.bs = cvtnum('bs', value, 1n, INT_MAX);
    else if (key === 'count') a.count = cvtnum('count', value, 0n, INT64_MAX);
    else if (key === 'skip') a.skip = cvtnum('skip', value, 0n, INT64_MAX);
    else if (key === 'if') a.input = value;
    else if (key === 'of') a.output = value;
    // (qemu-img names the operand up to its '=')
    else throw new UsageError(`unrecognized operand ${key ?? op}`, false);
  }
  return a;
}

export async function cmdDd(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':hf:O:U', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const a = parseOperands(p.operands);
  if (a.input === undefined || a.output === undefined)
    throw new UsageError('Must specify both input and output files', false);
  const outFmt = last(p, 'O') ?? 'raw';
  const src = openTarget(targetOf(p, a.input), true);
  let out: GuestDisk | undefined;
  try {
    const fmt = parseFormatOrFail(outFmt);
    let size = BigInt(src.size);
    const bs = a.bs;
    if (a.count !== undefined && a.count <= INT64_MAX / bs && a.count * bs < size) size = a.count * bs;
    // A skip beyond the input (or overflowing) makes an empty output, with a message (like dd(1)).
    const skipBeyond = a.skip !== undefined && (a.skip > INT64_MAX / bs || size < bs * a.skip);
    const outSize = skipBeyond ? 0n : size - bs * (a.skip ?? 0n);
    try {
      if (fmt === 'raw') createRaw(a.output, Number(outSize), undefined);
      else Qcow2Image.create(a.output, { size: Number(outSize) }).close();
    } catch (e) {
      if (e instanceof Qcow2Error)
        throw new Qcow2Error(e.code, `${a.output}: error while creating output image: ${e.message}`, e.data);
      throw e;
    }
    out = openImage(a.output, { format: fmt });
    let inPos = skipBeyond ? size : bs * (a.skip ?? 0n);
    if (skipBeyond) io.err(`${program()}: ${a.input}: cannot skip to specified offset\n`);
    let outPos = 0;
    // Every block is read and written as it is: zeros included (blk_pwrite), so the output is
    // fully allocated where the input was read.
    while (inPos < size) {
      const bytes = Number(inPos + bs > size ? size - inPos : bs);
      const buf = src.read(Number(inPos), bytes);
      out.write(outPos, buf);
      inPos += BigInt(bytes);
      outPos += bytes;
    }
    out.flush();
    return 0;
  } finally {
    closeQuietly(out);
    closeQuietly(src);
  }
}

function parseFormatOrFail(f: string): 'qcow2' | 'raw' {
  try {
    return parseFormat(f)!;
  } catch {
    throw new UsageError('Unknown file format', false);
  }
}
