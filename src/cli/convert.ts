/**
 * `qcow2 convert [-f fmt] [-O raw|qcow2] [-c] [-o opts] [-B backing] [-l snapshot] [-n] [-p] [-q]
 * SRC... DST` as qemu-img convert: sources are concatenated; all-zero and unallocated clusters are
 * not written to a fresh target; `-c` compresses each cluster. `--bitmaps` copies the persistent
 * bitmaps of a single qcow2 source after the data (same names, granularity, enabled state, bits);
 * an inconsistent one fails the conversion before anything is written, unless
 * `--skip-broken-bitmaps` (then a warning), as qemu-img 7.2 does.
 */
import type { GuestDisk } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { Qcow2Image } from '../image.ts';
import { openImage } from '../open.ts';
import { FileDevice } from '../io/device.ts';
import {
  all,
  getopt,
  has,
  last,
  mergeOptStrings,
  parseFormat,
  parseOptString,
  parseSize,
  UsageError,
} from './args.ts';
import { closeQuietly, errLine, isQcow2, secretsOf, targetOf, type Io } from './common.ts';
import { createRaw, qcow2CreateOptions } from './create.ts';
import { copyConcatCompressed, needsConcatCompression } from './convert-compressed.ts';
import { sparsePieces } from './convert-sparse.ts';
import { firstNonZero } from './first-difference.ts';
import { StatusRuns } from './status-runs.ts';

/** All zeros (by memcmp, first-difference.ts). */
function isZero(b: Uint8Array): boolean {
  return firstNonZero(b) < 0;
}

/** `-l snapshot.name=N`, `snapshot.id=N` or a bare id-or-name. */
function snapshotParam(v: string): string {
  const o = parseOptString(v);
  return o.get('snapshot.name') ?? o.get('snapshot.id') ?? v;
}

export async function cmdConvert(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':hf:O:B:F:Cco:l:S:pt:T:qnm:WUr:', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'target-image-opts', arg: 'none' },
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'bitmaps', arg: 'none' },
    { name: 'skip-broken-bitmaps', arg: 'none' },
  ]);
  const copyBitmaps = has(p, 'bitmaps');
  const skipBroken = has(p, 'skip-broken-bitmaps');
  if (skipBroken && !copyBitmaps) throw new UsageError('--skip-broken-bitmaps requires --bitmaps', false);
  if (p.operands.length < 2) throw new UsageError('Must specify image file name');
  const outFmt = parseFormat(last(p, 'O')) ?? 'raw';
  const compress = has(p, 'c');
  if (compress && outFmt !== 'qcow2')
    throw new Qcow2Error('NO_COMPRESSION', 'Compression not supported for this file format');
  // qemu-img checks this before it opens anything
  if (has(p, 'n') && all(p, 'o').length > 0)
    throw new UsageError('-o has no effect when skipping image creation', false);
  const snap = last(p, 'l');
  const srcNames = p.operands.slice(0, -1);
  const dst = p.operands[p.operands.length - 1]!;
  const quiet = has(p, 'q');
  const progress = has(p, 'p') && !quiet;

  const srcs: GuestDisk[] = [];
  let out: GuestDisk | undefined;
  try {
    for (const n of srcNames) {
      const t = targetOf(p, n);
      srcs.push(
        openImage(t.filename, {
          format: t.format,
          readOnly: true,
          secret: t.secret,
          forceShare: t.forceShare,
          locking: t.locking,
        }),
      );
    }
    if (snap !== undefined && (srcs.length !== 1 || !isQcow2(srcs[0]!))) {
      throw new UsageError('No support for concatenating multiple snapshot', false);
    }
    const bitmaps = copyBitmaps ? bitmapsToCopy(srcs, outFmt, skipBroken, io) : [];
    const total = srcs.reduce((a, d) => a + d.size, 0);
    const fresh = !has(p, 'n');
    const o = mergeOptStrings(all(p, 'o'));
    const B = last(p, 'B');
    if (B !== undefined) o.set('backing_file', B);
    const F = last(p, 'F');
    if (F !== undefined) o.set('backing_fmt', F);
    if (B !== undefined && srcs.length > 1) {
      throw new UsageError(
        'Having a backing file for the target makes no sense when concatenating multiple input images',
        false,
      );
    }
    // qemu-img 7.2 no longer probes a new image's backing format (docs/about/removed-features).
    if (fresh && o.has('backing_file') && !o.has('backing_fmt')) {
      throw new UsageError('Use of backing file requires explicit backing format', false);
    }
    if (fresh) {
      if (outFmt === 'raw') {
        createRaw(dst, total, o.get('preallocation'));
        out = openImage(dst, { format: 'raw' });
      } else {
        out = Qcow2Image.create(dst, qcow2CreateOptions(dst, o, total, secretsOf(p)));
      }
    } else {
      out = openImage(dst, { format: parseFormat(last(p, 'O')) });
    }
    // -t: the target's cache mode, checked once the target exists (as img_convert does). Its
    // default is unsafe: after the target's creation (flushed as qcow2_co_create flushes), no flush
    // reaches the disk, as with qemu-img convert. Any other mode flushes at the end.
    const cache = last(p, 't') ?? 'unsafe';
    if (!['none', 'writeback', 'writethrough', 'directsync', 'unsafe'].includes(cache)) {
      throw new UsageError(`Invalid cache option: ${cache}`, false);
    }
    const targetDevice = (out as { device?: unknown }).device;
    if (cache === 'unsafe' && targetDevice instanceof FileDevice) targetDevice.ignoreFlushes();
    const targetBacking = fresh && o.has('backing_file');
    // qcow2_has_zero_init: a new image reads as zeros unless it is both encrypted and
    // preallocated (its preallocated clusters decrypt to noise), and then zeros must be written.
    const encrypted = o.has('encrypt.format') || (o.has('encryption') && o.get('encryption') !== 'off');
    const zeroInit = !(encrypted && (o.get('preallocation') ?? 'off') !== 'off');
    // -S 0: a fully allocated target; zeros are written as data (qemu-img turns BLK_ZERO into BLK_DATA).
    const allocateAll = /^0+[kKmMgGtTbB]?$/.test(last(p, 'S') ?? '');
    const chunk = isQcow2(out) ? out.clusterSize : 65536;
    if (progress) io.out('    (0.00/100%)\r');
    let base = 0;
    // -c over sources that end inside a target cluster: clusters read across them (convert-compressed.ts)
    const concat = compress && snap === undefined && needsConcatCompression(srcs, chunk);
    if (concat && isQcow2(out))
      copyConcatCompressed(srcs, out, { skipHoles: fresh && zeroInit, allocateAll });
    // An explicit -S N (N > 0): qemu-img's sparse detection inside data runs (convert-sparse.ts)
    const sArg = last(p, 'S');
    const minSparse = sArg === undefined || allocateAll ? 0 : parseSize(sArg);
    const sparse =
      typeof minSparse === 'number' && minSparse > 0 && !compress && !concat && snap === undefined;
    if (sparse && fresh && zeroInit && !targetBacking) {
      for (const src of srcs) {
        const runs = new StatusRuns(src, src.size);
        for (let off = 0; off < src.size;) {
          const st = runs.at(off);
          // qemu-img reads at most 2 MiB at a time (IO_BUF_SIZE)
          const len = Math.min(st.length, src.size - off, 2 * 1024 * 1024);
          if (st.present && !st.zero) {
            const data = src.read(off, len);
            for (const piece of sparsePieces(data, base + off, minSparse)) {
              if (piece.data)
                out.write(
                  base + off + piece.offset,
                  data.subarray(piece.offset, piece.offset + piece.length),
                );
            }
          }
          off += len;
        }
        base += src.size;
      }
    }
    // One chunk buffer for the whole copy: each chunk is written (copied out) before the next read.
    const chunkBuf = new Uint8Array(chunk);
    const readChunk = (src: GuestDisk, off: number, len: number): Uint8Array => {
      const view = len === chunk ? chunkBuf : chunkBuf.subarray(0, len);
      src.readInto(view, off);
      return view;
    };
    for (const src of concat || (sparse && fresh && zeroInit && !targetBacking) ? [] : srcs) {
      const runs = new StatusRuns(src, src.size);
      for (let off = 0; off < src.size; off += chunk) {
        const len = Math.min(chunk, src.size - off);
        if (snap === undefined && fresh) {
          // A run that reads as zeros is skipped whole (chunks it covers entirely): the cost of
          // converting follows what is allocated, not the virtual size. With -B the new image's
          // backing file stands for the source's: what the source reads through from its backing
          // chain is left unallocated too (qemu-img convert's BLK_BACKING_FILE).
          const st = runs.at(off);
          const skip = targetBacking ? !st.present || st.depth > 0 : !allocateAll && (!st.present || st.zero);
          if (skip && zeroInit && st.length >= len) {
            off +=
              st.length >= src.size - off ? src.size - off : Math.floor(st.length / chunk) * chunk - chunk;
            continue;
          }
        }
        const data =
          snap !== undefined && isQcow2(src)
            ? src.readSnapshot(snapshotParam(snap), off, len)
            : readChunk(src, off, len);
        if (isZero(data) && !allocateAll) {
          // Zeros over a backing file must be written: unallocated would show the backing data.
          if (!fresh || targetBacking || !zeroInit) out.writeZeroes(base + off, len);
          continue;
        }
        if (compress && isQcow2(out)) out.writeCompressed(base + off, data);
        else out.write(base + off, data);
      }
      base += src.size;
    }
    if (bitmaps.length > 0 && isQcow2(out) && isQcow2(srcs[0]!)) {
      // after the data, so that copying it dirties nothing (qemu-img's convert_copy_bitmaps)
      for (const b of bitmaps) {
        out.addBitmap(b.name, { granularity: b.granularity, disabled: !b.flags.includes('auto') });
        out.mergeBitmap(b.name, srcs[0].bitmapSource(b.name));
      }
    }
    out.flush();
    if (progress) io.out('    (100.00/100%)\r\n');
    return 0;
  } finally {
    for (const s of srcs) closeQuietly(s);
    closeQuietly(out);
  }
}

/** The source's bitmaps `--bitmaps` copies; inconsistent ones fail or (skipped) warn, as qemu-img. */
function bitmapsToCopy(
  srcs: readonly GuestDisk[],
  outFmt: 'raw' | 'qcow2',
  skipBroken: boolean,
  io: Io,
): { name: string; granularity: number; flags: string[] }[] {
  if (srcs.length !== 1) throw new UsageError('Only one source image may be given with --bitmaps', false);
  const src = srcs[0]!;
  if (!isQcow2(src) || outFmt !== 'qcow2')
    throw new Qcow2Error('BITMAPS_UNSUPPORTED', 'Source or destination format does not support bitmaps');
  const out: { name: string; granularity: number; flags: string[] }[] = [];
  for (const b of src.listBitmaps().bitmaps ?? []) {
    if (b.flags.includes('in-use')) {
      if (!skipBroken)
        throw new Qcow2Error(
          'BITMAP_INCONSISTENT',
          `Cannot copy inconsistent bitmap '${b.name}'\nTry --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it`,
          { name: b.name },
        );
      errLine(io, `warning: Skipping inconsistent bitmap '${b.name}'`);
      continue;
    }
    out.push({ name: b.name, granularity: b.granularity, flags: [...b.flags] });
  }
  return out;
}
