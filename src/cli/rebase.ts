/**
 * `qcow2 rebase [-u] [-b NEW] [-F FMT] [-f fmt] [-q] FILE`. `-u` only rewrites the backing name
 * (engine `setBacking`); the safe mode copies the clusters that differ between old and new backing
 * into the image first, then switches.
 */
import type { GuestDisk } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { openImage } from '../open.ts';
import { getopt, has, last, UsageError } from './args.ts';
import { QEMU_FORMAT_DRIVERS } from './qemu-drivers.ts';
import { closeQuietly, combinePath, isQcow2, openTarget, targetOf, type Io } from './common.ts';

export async function cmdRebase(argv: string[], _io: Io): Promise<number> {
  const p = getopt(argv, ':hf:F:b:upt:T:qU', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const b = last(p, 'b');
  const F = last(p, 'F');
  if (b === undefined && !has(p, 'u'))
    throw new UsageError('Must specify backing file (-b) or use unsafe mode (-u)', false);
  // Unsafe mode never opens the old backing chain (qemu-img's BDRV_O_NO_BACKING): it may be
  // missing, or loop.
  const d = openTarget(targetOf(p, p.operands[0]!), false, { openBacking: !has(p, 'u') });
  try {
    if (F !== undefined && !QEMU_FORMAT_DRIVERS.includes(F))
      throw new UsageError(`Invalid format name: '${F}'`, false);
    if (!isQcow2(d)) throw new Qcow2Error('NO_BACKING', 'This image format does not support backing files');
    const newName = b === '' ? undefined : b;
    if (!has(p, 'u')) {
      // Safe mode: make every guest cluster read the same through the new backing.
      const nb =
        newName === undefined
          ? undefined
          : openImage(combinePath(d.filename, newName), { driver: F, readOnly: true });
      try {
        const step = d.clusterSize;
        const oldSize = d.backingSize;
        for (let off = 0; off < d.size; off += step) {
          const len = Math.min(step, d.size - off);
          const st = d.blockStatus(off, d.size - off);
          // Whole clusters of one run are decided at once: held by this image (nothing to do), or
          // reading as zeros both through the old backing chain and in the new backing file.
          const held = st.present && st.depth === 0;
          let whole = st.length >= len ? Math.floor(Math.min(st.length, d.size - off) / step) * step : 0;
          if (!held) whole = !st.present || st.zero ? Math.min(whole, zeroRunIn(nb, off, whole, step)) : 0;
          if (whole > 0) {
            off += whole - step;
            continue;
          }
          if (held) continue;
          const cur = d.read(off, len);
          const nxt = nb && off < nb.size ? nb.read(off, Math.min(len, nb.size - off)) : new Uint8Array(0);
          const same = cur.every((v, i) => (nxt[i] ?? 0) === v);
          // qemu-img 7.2 writes zeros as a zero write (a zero cluster) only past the end of the
          // old backing file (buf_old_is_zero); zeros read from the old chain are written as data.
          // A version 2 image has no zero flag (qcow2.txt: zero clusters need version 3): with no
          // backing file yet its zero write deallocates, and the new backing file would show
          // through once switched, so its zeros are written as data (QEMU 7.2 loses them there:
          // known bug qemu-7.2-rebase-v2-loses-zeros).
          if (!same && off >= oldSize && d.header.version >= 3) d.writeZeroes(off, len);
          else if (!same) d.write(off, cur);
        }
      } finally {
        closeQuietly(nb);
      }
    }
    // qemu 7.2 (bdrv_change_backing_file with `require`): a new backing file needs its format,
    // checked only now, after safe mode's copy, as qemu-img does.
    if (newName !== undefined && F === undefined)
      throw new Qcow2Error(
        'NO_BACKING_FMT',
        `Could not change the backing file to '${newName}': backing format must be specified`,
      );
    d.setBacking(newName, F, { mustExist: !has(p, 'u') });
    d.flush();
    return 0;
  } finally {
    closeQuietly(d);
  }
}

/** How much of [off, off + max) reads as zeros in `nb` (past its end: zeros), in whole steps. */
function zeroRunIn(nb: GuestDisk | undefined, off: number, max: number, step: number): number {
  if (!nb || off >= nb.size) return max;
  const m = Math.min(max, nb.size - off);
  const ns = nb.blockStatus(off, m);
  if (ns.present && !ns.zero) return 0;
  // Past the end of nb the rest reads as zeros too.
  const run = ns.length >= m ? max : ns.length;
  return Math.floor(run / step) * step;
}
