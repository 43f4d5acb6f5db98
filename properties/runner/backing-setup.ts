/**
 * A run's backing file, made before the image. A qcow2 backing file is QEMU's: `qemu-img create`,
 * then its ranges written by qemu-io (qemu-img/qemu-io.ts `qemuCreateBacking`). A raw one is made
 * in process with the same bytes, and without two processes a sequence: `qemu-img create -f raw`
 * makes a file of the size rounded up to a sector (ftruncate: a hole), and qemu-io's
 * `write -P pattern offset length` stores those bytes in order, later writes over earlier ones;
 * here the same ftruncate and the same writes, in the same order.
 */
import * as fs from 'node:fs';
import type { BackingLayout } from '../layout.ts';
import { qemuCreateBacking } from '../qemu/qemu-img.ts';

export async function createBackingFile(file: string, backing: BackingLayout): Promise<void> {
  if (backing.format !== 'raw') return qemuCreateBacking(file, backing);
  const size = Math.ceil(backing.size / 512) * 512;
  const fd = fs.openSync(file, 'wx');
  try {
    fs.ftruncateSync(fd, size);
    for (const w of backing.writes) {
      if (w.offset < 0 || w.length < 0 || w.offset + w.length > size)
        throw new Error(`backing write ${w.offset}+${w.length} beyond the backing file (${size} bytes)`);
      // one reused piece of the pattern, written as many times as the range needs (no buffer of
      // the write's size per write: up to 4 MiB each, garbage by the next write)
      const fill = patternPiece(w.pattern);
      for (let at = 0; at < w.length;) {
        const n = Math.min(fill.length, w.length - at);
        at += fs.writeSync(fd, fill, 0, n, w.offset + at);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

const PIECE = 1 << 20;
let piece: Buffer | undefined;

/** A 1 MiB buffer of `pattern` (one buffer for every write, refilled when the pattern changes). */
function patternPiece(pattern: number): Buffer {
  piece ??= Buffer.alloc(PIECE, pattern);
  if (piece[0] !== (pattern & 0xff) || piece[PIECE - 1] !== (pattern & 0xff)) piece.fill(pattern);
  return piece;
}
