/** Compare a raw file (a qemu-img convert output) with a reference disk, piece by piece. */
import * as fs from 'node:fs';
import type { ReferenceDisk } from '../model/reference-disk.ts';

export interface RawMismatch {
  offset: number;
  expected: string;
  observed: string;
}

const PIECE = 1 << 20;
const ZEROS = new Uint8Array(PIECE);

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
): RawMismatch | undefined {
  const fileSize = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  try {
    const buf = new Uint8Array(PIECE);
    const end = Math.max(fileSize, compareLength);
    for (let at = 0; at < end; at += PIECE) {
      const len = Math.min(PIECE, end - at);
      const got = buf.subarray(0, len);
      got.fill(0);
      if (at < fileSize) fs.readSync(fd, got, 0, Math.min(len, fileSize - at), at);
      const modelLen = Math.max(0, Math.min(len, Math.min(disk.size, compareLength) - at));
      const want = modelLen > 0 ? new Uint8Array(len) : ZEROS.subarray(0, len);
      if (modelLen > 0) want.set(disk.read(at, modelLen));
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
