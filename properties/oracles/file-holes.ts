/**
 * Holes of a sparse file, asked of the file system with lseek(SEEK_DATA / SEEK_HOLE) in process
 * (what `qemu-img map -f raw` asks it, without a process per call). The harness's own binding
 * (koffi, lseek only): an engine under test (a planted copy of src/ included) keeps its own.
 * Undefined where lseek cannot answer (no koffi, not Linux, a file system without SEEK_DATA).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';

/** lseek whence values and errno (Linux, <unistd.h> with _GNU_SOURCE, asm-generic/errno-base.h). */
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

interface Lseek {
  lseek(fd: number, offset: number, whence: number): number;
  errno(): number;
}

let binding: Lseek | null | undefined;

function lseekBinding(): Lseek | undefined {
  if (binding === undefined) {
    binding = null;
    if (process.platform === 'linux') {
      try {
        const koffi = createRequire(import.meta.url)('koffi') as {
          load(p: string): { func(decl: string): (...args: unknown[]) => unknown };
          errno(): number;
        };
        const fn = koffi.load('libc.so.6').func('int64_t lseek(int fd, int64_t offset, int whence)');
        binding = {
          lseek: (fd, offset, whence) => Number(fn(fd, offset, whence)),
          errno: () => koffi.errno(),
        };
      } catch {
        binding = null;
      }
    }
  }
  return binding ?? undefined;
}

/** The holes of `file` as [start, end) pairs, or undefined when they cannot be asked for. */
export function fileHoles(file: string): [number, number][] | undefined {
  const c = lseekBinding();
  if (!c) return undefined;
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const holes: [number, number][] = [];
    let at = 0;
    while (at < size) {
      const data = c.lseek(fd, at, SEEK_DATA);
      if (data < 0) {
        // ENXIO: no data at or after `at` — a trailing hole; anything else: unknown
        if (c.errno() !== ENXIO) return undefined;
        holes.push([at, size]);
        break;
      }
      if (data > at) holes.push([at, Math.min(data, size)]);
      // every file has an implicit hole at its end: SEEK_HOLE finds one unless it fails
      const hole = c.lseek(fd, data, SEEK_HOLE);
      if (hole <= data) return undefined;
      at = hole;
    }
    return holes;
  } finally {
    fs.closeSync(fd);
  }
}
