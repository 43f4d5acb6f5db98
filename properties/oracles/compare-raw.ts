/**
 * Compare a raw file (a qemu-img convert output) with a reference disk, piece by piece; the file's
 * holes (`qemu-img map`, which asks the file system) are not read.
 */
import * as fs from 'node:fs';
import { QEMU_IMG, runTool } from '../qemu/qemu-img.ts';
import { fileHoles } from './file-holes.ts';
import type { ReferenceDisk } from '../model/reference-disk.ts';

export interface RawMismatch {
  offset: number;
  expected: string;
  observed: string;
}

const PIECE = 1 << 20;
const ZEROS = new Uint8Array(PIECE);
/** The file's and the model's side of a piece, reused from piece to piece and call to call. */
const GOT = new Uint8Array(PIECE);
const WANT = new Uint8Array(PIECE);

function hexAt(bytes: Uint8Array, at: number): string {
  return Array.from(bytes.subarray(at, at + 16), (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Bytes [0, compareLength) of the file must equal the disk, bytes beyond the disk's size (up to the
 * file's length) must be zero. `compareLength` defaults to the disk's size.
 */
export function compareRawFile(
  file: string,
  disk: ReferenceDisk,
  compareLength = disk.size,
  holes: readonly (readonly [number, number])[] = [],
): RawMismatch | undefined {
  const fileSize = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  try {
    const end = Math.max(fileSize, compareLength);
    let hole = 0;
    for (let at = 0; at < end; at += PIECE) {
      const len = Math.min(PIECE, end - at);
      // A piece inside a hole of the file reads as zeros: only the model needs looking at.
      while (hole < holes.length && holes[hole][1] <= at) hole++;
      const inHole = hole < holes.length && holes[hole][0] <= at && holes[hole][1] >= at + len;
      const modelEnd = Math.min(disk.size, compareLength);
      if (inHole && (at >= modelEnd || disk.isZeroRange(at, Math.min(len, modelEnd - at)))) continue;
      const got = GOT.subarray(0, len);
      // (the buffer holds the previous piece: every byte is read or zeroed, a short read included)
      let fileLen = 0;
      for (let n = -1; n !== 0 && at + fileLen < fileSize && fileLen < len; fileLen += n)
        n = fs.readSync(fd, got, fileLen, Math.min(len, fileSize - at) - fileLen, at + fileLen);
      got.fill(0, fileLen);
      const modelLen = Math.max(0, Math.min(len, Math.min(disk.size, compareLength) - at));
      const want = modelLen > 0 ? WANT.subarray(0, len) : ZEROS.subarray(0, len);
      if (modelLen > 0) {
        disk.readInto(at, want.subarray(0, modelLen));
        want.fill(0, modelLen);
      }
      // Native comparison first (gigabyte disks are mostly holes); the byte loop only locates a
      // difference.
      if (Buffer.compare(got, want) === 0) continue;
      for (let i = 0; i < len; i++) {
        if (got[i] !== want[i]) {
          return {
            offset: at + i,
            expected: `${hexAt(want, i)} (model, disk size ${disk.size}, file size ${fileSize})`,
            observed: hexAt(got, i),
          };
        }
      }
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The holes of a sparse raw file, [start, end) pairs: asked of the file system with
 * lseek(SEEK_DATA/SEEK_HOLE) in process (what `qemu-img map -f raw` asks it, without a process
 * per call); where lseek cannot answer, `qemu-img map -f raw` (none when that fails too). Holes only
 * let the comparison skip reading zeros: a range not reported as a hole is read and compared.
 */
export async function rawFileHoles(file: string): Promise<[number, number][]> {
  const local = fileHoles(file);
  if (local) return local;
  const r = await runTool(QEMU_IMG, ['map', '-f', 'raw', '--output=json', file]);
  if (r.exitCode !== 0) return [];
  const extents = JSON.parse(r.stdout) as { start: number; length: number; data: boolean; zero: boolean }[];
  return extents.filter((e) => !e.data && e.zero).map((e) => [e.start, e.start + e.length]);
}
