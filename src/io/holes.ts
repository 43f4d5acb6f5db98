/**
 * Holes of sparse files, from lseek(SEEK_DATA / SEEK_HOLE) (through koffi, see libc.ts), as
 * QEMU's file-posix find_allocation uses them: `qemu-img map` of a raw file (or a raw backing
 * file) reports holes as zero and not data, and convert skips them.
 */
import { ENXIO, SEEK_DATA, SEEK_HOLE, libc } from './libc.ts';

/** A run from the queried offset: data, or a hole (reads as zeros). */
export interface FileExtent {
  data: boolean;
  length: number;
}

/**
 * The run at `offset` in the open file `fd` of `size` bytes, at most `length` long; undefined
 * where holes cannot be asked for (no lseek binding, a file system that refuses SEEK_DATA): the
 * caller then treats the range as data, as QEMU does.
 */
export function fileExtent(fd: number, offset: number, length: number, size: number): FileExtent | undefined {
  const c = libc();
  if (!c || offset >= size) return undefined;
  const end = Math.min(size, offset + length);
  const data = c.lseek(fd, offset, SEEK_DATA);
  if (data < 0) {
    // ENXIO: no data at or after offset — a trailing hole. Anything else: unknown, so data.
    return c.errno() === ENXIO ? { data: false, length: end - offset } : undefined;
  }
  if (data > offset) return { data: false, length: Math.min(data, end) - offset };
  const hole = c.lseek(fd, offset, SEEK_HOLE);
  // Every file has an implicit hole at its end, so SEEK_HOLE finds one unless it fails.
  if (hole <= offset) return undefined;
  return { data: true, length: Math.min(hole, end) - offset };
}
