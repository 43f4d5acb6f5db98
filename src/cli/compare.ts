/**
 * `qcow2 compare [-f fmt] [-F fmt] [-s] [-q] A B` as qemu-img compare: 0 identical, 1 different
 * ("Content mismatch at offset N!", N the 512-byte sector holding the first difference), 2 error.
 * Without -s a size difference is allowed when the extra part reads as zeros.
 */
import type { BlockStatus, GuestDisk } from '../api.ts';
import { getopt, has, UsageError } from './args.ts';
import { closeQuietly, openTarget, targetOf, type Io } from './common.ts';
import { reportError } from './main.ts';
import { IoError } from '../errors.ts';
import { strerrorOf } from '../io/errno.ts';
import { program } from './program.ts';
import { firstDiff, firstNonZero } from './first-difference.ts';
import { StatusRuns } from './status-runs.ts';

/** A read of either image failed (qemu-img compare's exit code 4). */
class ReadFailed extends Error {}

const CHUNK = 1 << 20;

/** Unallocated with nothing below, or a zero run: reads as zeros without reading. */
function readsAsZero(s: BlockStatus): boolean {
  return !s.present || s.zero;
}

export async function cmdCompare(argv: string[], io: Io): Promise<number> {
  let a: GuestDisk | undefined;
  let b: GuestDisk | undefined;
  let said = '';
  try {
    const p = getopt(argv, ':hf:F:T:pqsU', [
      { name: 'object', arg: 'required' },
      { name: 'image-opts', arg: 'none' },
      { name: 'force-share', arg: 'none', key: 'U' },
      { name: 'help', arg: 'none', key: 'h' },
    ]);
    if (p.operands.length !== 2) throw new UsageError('Expecting two image file names');
    const quiet = has(p, 'q');
    const strict = has(p, 's');
    // qemu-img's stdout is a buffered stream: on a pipe its lines come after every error line.
    const say = (s: string): void => {
      if (!quiet) said += s;
    };
    // A failed read names the image and the offset and ends the compare with exit code 4.
    // Two buffers for the whole compare (a fresh megabyte per chunk cost more than the reads).
    const bufA = new Uint8Array(CHUNK);
    const bufB = new Uint8Array(CHUNK);
    const readOf = (d: GuestDisk, name: string, off: number, len: number, buf = bufA): Uint8Array => {
      try {
        const out = buf.subarray(0, len);
        d.readInto(out, off);
        return out;
      } catch (e) {
        if (!(e instanceof IoError)) throw e;
        throw new ReadFailed(`Error while reading offset ${off} of ${name}: ${strerrorOf(e)}`);
      }
    };
    const nameA = p.operands[0]!;
    const nameB = p.operands[1]!;
    a = openTarget(targetOf(p, p.operands[0]!, 'f'), true);
    b = openTarget(targetOf(p, p.operands[1]!, 'F'), true);
    const common = Math.min(a.size, b.size);
    if (a.size !== b.size) {
      if (strict) {
        say('Strict mode: Image size mismatch!\n');
        return 1;
      }
    }
    const mismatch = (off: number): number => {
      say(`Content mismatch at offset ${off - (off % 512)}!\n`);
      return 1;
    };
    // Run by run, as qemu-img compare: block status of both sides, the shorter run decides; runs
    // that read as zeros on both sides are skipped in one step (cost follows what is allocated).
    const runsA = new StatusRuns(a, common);
    const runsB = new StatusRuns(b, common);
    for (let off = 0; off < common;) {
      const sa = runsA.at(off);
      const sb = runsB.at(off);
      const run = Math.max(1, Math.min(sa.length, sb.length, common - off));
      if (strict && sa.present !== sb.present) {
        // qemu -s reports the allocation difference of the first differing run.
        if (sa.zero !== sb.zero || sa.data !== sb.data) {
          say(`Strict mode: Offset ${off} block status mismatch!\n`);
          return 1;
        }
      }
      if (readsAsZero(sa) && readsAsZero(sb)) {
        off += run;
        continue;
      }
      const len = Math.min(CHUNK, run);
      const i = firstDiff(readOf(a, nameA, off, len), readOf(b, nameB, off, len, bufB));
      if (i >= 0) return mismatch(off + i);
      off += len;
    }
    // qemu-img warns of the size difference only once the common part compared equal.
    if (a.size !== b.size) say('Warning: Image size mismatch!\n');
    const longer = a.size > b.size ? a : b;
    const longerName = a.size > b.size ? nameA : nameB;
    const runs = new StatusRuns(longer, longer.size);
    for (let off = common; off < longer.size;) {
      const st = runs.at(off);
      const run = Math.max(1, Math.min(st.length, longer.size - off));
      if (readsAsZero(st)) {
        off += run;
        continue;
      }
      const len = Math.min(CHUNK, run);
      const i = firstNonZero(readOf(longer, longerName, off, len));
      if (i >= 0) return mismatch(off + i);
      off += len;
    }
    say('Images are identical.\n');
    return 0;
  } catch (e) {
    if (e instanceof ReadFailed) {
      io.err(`${program()}: ${e.message}\n`);
      return 4;
    }
    reportError(e, io);
    return 2;
  } finally {
    if (said) io.out(said);
    closeQuietly(a);
    closeQuietly(b);
  }
}
