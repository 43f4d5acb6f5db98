/** `qcow2 resize [--shrink] [-f fmt] [-q] FILE [+|-]SIZE` as qemu-img resize. */
import { Qcow2Error } from '../errors.ts';
import { checkShrink } from '../engine/options.ts';
import type { Preallocation } from '../api.ts';
import { getopt, has, last as lastOpt, parseSizeBig, UsageError } from './args.ts';
import { closeQuietly, openTarget, targetOf, type Io } from './common.ts';

export async function cmdResize(argv: string[], io: Io): Promise<number> {
  // A size like "-1G" is not an option: stop option parsing at it, as qemu-img does.
  const args = [...argv];
  const last = args[args.length - 1];
  if (last !== undefined && /^-[0-9]/.test(last)) args.splice(args.length - 1, 0, '--');
  const p = getopt(args, ':f:hqU', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'preallocation', arg: 'required' },
    { name: 'shrink', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const pa = lastOpt(p, 'preallocation') ?? 'off';
  // img_resize: the mode is one of QEMU's PreallocMode names.
  if (!['off', 'metadata', 'falloc', 'full'].includes(pa))
    throw new Qcow2Error('INVALID_OPTION', `Invalid preallocation mode '${pa}'`, { preallocation: pa });
  const preallocation = pa as Preallocation;
  if (p.operands.length !== 2) throw new UsageError('Expecting image file name and size');
  const sizeArg = p.operands[1]!;
  const rel = sizeArg[0] === '+' || sizeArg[0] === '-' ? sizeArg[0] : undefined;
  const r = parseSizeBig(rel ? sizeArg.slice(1) : sizeArg);
  if (!r.ok || (rel && /^\s*\+/.test(sizeArg.slice(1))))
    throw new UsageError('Invalid size specified', false);
  const d = openTarget(targetOf(p, p.operands[0]!), false);
  try {
    const delta = Number(r.value);
    const size = rel === '+' ? d.size + delta : rel === '-' ? d.size - delta : delta;
    if (size < 0) throw new Qcow2Error('BAD_SIZE', 'New image size must be positive');
    // img_resize: preallocation only for growth (the same size included), before --shrink.
    if (size <= d.size && preallocation !== 'off')
      throw new Qcow2Error('BAD_SIZE', 'Preallocation can only be used for growing images', { size });
    // qemu-img resize asks for --shrink before the driver looks at the size (engine's rule).
    checkShrink(d.size, size, has(p, 'shrink'));
    d.resize(size, { shrink: has(p, 'shrink'), preallocation });
    d.flush();
    if (!has(p, 'q')) io.out('Image resized.\n');
    return 0;
  } finally {
    closeQuietly(d);
  }
}
