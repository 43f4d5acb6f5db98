/**
 * `qcow2 commit [-f fmt] [-b base] [-d] [-q] FILE` as qemu-img commit: everything the layers above
 * `base` hold (FILE and any intermediate images) is written into `base` (by default FILE's own
 * backing file). Without -b and -d, FILE is emptied afterwards; -b implies -d, and intermediate
 * images are left as they are.
 */
import * as fs from 'node:fs';
import type { GuestDisk } from '../api.ts';
import { IoError, Qcow2Error } from '../errors.ts';
import { strerrorOf } from '../io/errno.ts';
import { backingFormat } from '../format/header.ts';
import { openImage } from '../open.ts';
import { getopt, has, last, UsageError } from './args.ts';
import { closeQuietly, combinePath, isQcow2, openTarget, targetOf, type Io } from './common.ts';

const CHUNK = 1 << 20;

export async function cmdCommit(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':f:ht:b:dpqr:U', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const baseName = last(p, 'b');
  // qemu-img: "-b implies -d": the top image is emptied only when committing to its own backing file by default.
  const empty = baseName === undefined && !has(p, 'd');
  const t = targetOf(p, p.operands[0]!);
  const d = openTarget(t, !empty);
  let base: GuestDisk | undefined;
  try {
    if (!isQcow2(d)) throw new Qcow2Error('NO_BACKING', 'This image format does not support backing files');
    // The chain below the top: names as stored in each header, resolved from the image's directory.
    const chain: { name: string; file: string; format: 'qcow2' | 'raw' | undefined }[] = [];
    let layer: GuestDisk = d;
    let found = false;
    const opened: GuestDisk[] = [];
    try {
      while (isQcow2(layer) && layer.header.backingFile !== undefined) {
        const name = layer.header.backingFile;
        const file = combinePath(layer.filename, name);
        const f = backingFormat(layer.header);
        const format = f === 'raw' || f === 'qcow2' ? f : undefined;
        chain.push({ name, file, format });
        if (baseName === undefined) break;
        if (isBase(layer.filename, name, file, baseName)) {
          found = true;
          break;
        }
        layer = openImage(file, { format, readOnly: true, openBacking: false, noIo: true });
        opened.push(layer);
      }
    } finally {
      for (const o of opened) closeQuietly(o);
    }
    if (chain.length === 0) {
      throw new Qcow2Error('NO_BACKING', 'Image does not have a backing file', { filename: d.filename });
    }
    const target = chain[chain.length - 1]!;
    if (baseName !== undefined && !found) {
      throw new Qcow2Error(
        'NOT_IN_CHAIN',
        `Did not find '${baseName}' in the backing chain of '${t.filename}'`,
        {
          base: baseName,
        },
      );
    }
    const baseDepth = chain.length; // depth of the base as blockStatus counts layers (top = 0)
    // The top's chain already holds the base (read-only) in this process; QEMU reopens that node
    // read-write for the commit, so this second handle does not lock against our own first one.
    // The top's own backing file takes the options --image-opts gave it (backing.encrypt.key-secret…).
    const own = chain.length === 1 ? t.backing : undefined;
    base = openImage(own?.filename ?? target.file, {
      format: own?.format ?? target.format,
      secret: own?.secret,
      locking: 'off',
    });
    if (base.size < d.size) base.resize(d.size);
    try {
      for (let off = 0; off < d.size;) {
        const st = d.blockStatus(off, Math.min(CHUNK, d.size - off));
        const len = Math.max(1, Math.min(st.length, d.size - off, CHUNK));
        if (st.present && st.depth < baseDepth) {
          // The commit job (a mirror with unmap on) writes zeros with BDRV_REQ_MAY_UNMAP.
          if (st.zero) base.writeZeroes(off, len, { unmap: true });
          else base.write(off, d.read(off, len));
        }
        off += len;
      }
      base.flush();
    } catch (e) {
      // QEMU commits through a block job: an I/O error is the job's.
      if (e instanceof IoError) throw new IoError(e.code, `Block job failed: ${strerrorOf(e)}`, e.data);
      throw e;
    }
    if (empty) {
      try {
        d.makeEmpty();
        d.flush();
      } catch (e) {
        // qemu-img's words for a failed bdrv_make_empty, naming the image as given.
        if (e instanceof IoError)
          throw new IoError(e.code, `Failed to empty ${t.filename}: ${strerrorOf(e)}`, e.data);
        throw e;
      }
    }
    if (!has(p, 'q')) io.out('Image committed.\n');
    return 0;
  } finally {
    closeQuietly(base);
    closeQuietly(d);
  }
}

/**
 * bdrv_find_backing_image: with protocol names the strings are compared; otherwise the base name,
 * relative to the image whose backing file is looked at, and that backing file are compared as
 * canonical absolute paths.
 */
function isBase(imageName: string, backingName: string, backingFile: string, baseName: string): boolean {
  if (/^[a-z0-9+.-]+:/i.test(baseName) || /^[a-z0-9+.-]+:/i.test(backingName))
    return baseName === backingName || baseName === backingFile;
  const real = (f: string): string | undefined => {
    try {
      return fs.realpathSync(f);
    } catch {
      return undefined;
    }
  };
  const want = real(combinePath(imageName, baseName));
  return want !== undefined && want === real(backingFile);
}
