/**
 * The few libc calls Node does not offer, through koffi (an FFI whose prebuilt binaries ship
 * inside its npm package: no compiler at install time): fcntl for QEMU's OFD byte-range locks
 * (lock.ts), lseek for SEEK_DATA/SEEK_HOLE (holes.ts) and fallocate (device.ts, `allocate`). Loaded on first use, synchronously, so
 * that a command which opens no file never pays for it. Linux only (the constants below are
 * Linux's); elsewhere `libc()` is undefined and the callers fall back (no locks, no holes).
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** fcntl commands and lock types (Linux, <fcntl.h>). */
export const F_OFD_GETLK = 36;
export const F_OFD_SETLK = 37;
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;
export const SEEK_SET = 0;
/** lseek whence values (Linux, <unistd.h> with _GNU_SOURCE). */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
/** errno values (Linux, asm-generic/errno-base.h). */
export const ENXIO = 6;
export const EAGAIN = 11;
export const EACCES = 13;
export const EINVAL = 22;

/** struct flock as fcntl reads and writes it. */
export interface Flock {
  l_type: number;
  l_whence: number;
  l_start: number;
  l_len: number;
  l_pid: number;
}

export interface Libc {
  /** fcntl(fd, cmd, &flock); the struct is updated in place (F_OFD_GETLK). Returns -1 on error. */
  fcntlLock(fd: number, cmd: number, lock: Flock): number;
  /** lseek(fd, offset, whence), -1 on error. */
  lseek(fd: number, offset: number, whence: number): number;
  /** fallocate(fd, mode, offset, len) (QEMU's preallocation=falloc), -1 on error. */
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  /** errno of the last failed call. */
  errno(): number;
}

/**
 * struct flock on Linux x86-64 and arm64 (<asm-generic/fcntl.h>, 64-bit off_t): short l_type,
 * short l_whence, off_t l_start (aligned to 8), off_t l_len, pid_t l_pid, padded to 32 bytes.
 */
const FLOCK_SIZE = 32;
const FLOCK_TYPE = 0;
const FLOCK_WHENCE = 2;
const FLOCK_START = 8;
const FLOCK_LEN = 16;
const FLOCK_PID = 24;

/** fallocate modes (<linux/falloc.h>). */
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;

export interface Koffi {
  /** `deep`: dlopen with RTLD_DEEPBIND (the library's own symbols before the process's). */
  load(path: string, opts?: { deep?: boolean }): { func(decl: string): (...args: unknown[]) => unknown };
  /** The address an external pointer holds. */
  address(ptr: unknown): bigint;
  struct(name: string, def: Record<string, string>): unknown;
  pointer(t: unknown): unknown;
  inout(t: unknown): unknown;
  errno(): number;
}

let loaded: Libc | null | undefined;

/** The libc bindings, or undefined where they cannot load (no koffi binary, not Linux). */
export function libc(): Libc | undefined {
  if (loaded === undefined) loaded = process.platform === 'linux' ? tryLoad() : null;
  return loaded ?? undefined;
}

/**
 * koffi, through its prebuilt glibc binary for this machine when that is installed: the package
 * koffi's loader itself picks on glibc Linux, an optional dependency koffi pins to its own exact
 * version. koffi's loader first reads the ELF header of the node executable to tell glibc from
 * musl, which costs about 5 ms of CPU at every start that opens an image (7.1-7.3 ms against
 * 1.5-2.0 ms, measured). Anything unexpected (musl, another layout) goes through koffi's loader.
 */
function loadKoffi(req: NodeJS.Require): Koffi {
  const arch = process.arch;
  const musl = `/lib/ld-musl-${arch === 'x64' ? 'x86_64' : 'aarch64'}.so.1`;
  if ((arch === 'x64' || arch === 'arm64') && !fs.existsSync(musl)) {
    const binary = `@koromix/koffi-linux-${arch}/linux_${arch}/koffi.node`;
    const found = findInNodeModules(binary);
    if (found !== undefined) {
      // What require() does with a .node file, without its resolution steps (package.json reads,
      // realpath): 0.9-1.3 ms of CPU against 2.4-3.5 ms through require (measured).
      const m = { exports: {} };
      process.dlopen(m, found);
      return m.exports as Koffi;
    }
    try {
      return req(binary) as Koffi;
    } catch {
      // koffi's loader below
    }
  }
  return req('koffi') as Koffi;
}

let koffiLoaded: Koffi | null | undefined;
/** koffi itself (for other system libraries: codecs/libz.ts), or undefined where it cannot load. */
export function koffiModule(): Koffi | undefined {
  if (koffiLoaded === undefined) {
    try {
      koffiLoaded = process.platform === 'linux' ? loadKoffi(createRequire(import.meta.url)) : null;
    } catch {
      koffiLoaded = null;
    }
  }
  return koffiLoaded ?? undefined;
}

/** `rel` in the node_modules of this module's directory or of a parent, as require looks. */
function findInNodeModules(rel: string): string | undefined {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'node_modules', rel);
    if (fs.existsSync(file)) return file;
    if (path.dirname(dir) === dir) return undefined;
  }
}

function tryLoad(): Libc | null {
  // One koffi for libc and the other system libraries (a second dlopen of its binary is not needed).
  const koffi = koffiModule();
  if (koffi === undefined) return null;
  const lib = koffi.load('libc.so.6');
  // fcntl is variadic in C; koffi passes the variadic argument with its type: a pointer to one
  // struct flock kept for every call, packed and unpacked by hand (a koffi struct type marshalled
  // per call cost several times the system call, ~10 lock calls per image open).
  const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
  const flock = Buffer.alloc(FLOCK_SIZE);
  const lseek = lib.func('int64_t lseek(int fd, int64_t offset, int whence)');
  const fallocate = lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
  return {
    fcntlLock(fd, cmd, lock) {
      flock.fill(0);
      flock.writeInt16LE(lock.l_type, FLOCK_TYPE);
      flock.writeInt16LE(lock.l_whence, FLOCK_WHENCE);
      flock.writeBigInt64LE(BigInt(lock.l_start), FLOCK_START);
      flock.writeBigInt64LE(BigInt(lock.l_len), FLOCK_LEN);
      flock.writeInt32LE(lock.l_pid, FLOCK_PID);
      const r = fcntl(fd, cmd, 'void *', flock) as number;
      lock.l_type = flock.readInt16LE(FLOCK_TYPE);
      lock.l_whence = flock.readInt16LE(FLOCK_WHENCE);
      lock.l_start = Number(flock.readBigInt64LE(FLOCK_START));
      lock.l_len = Number(flock.readBigInt64LE(FLOCK_LEN));
      lock.l_pid = flock.readInt32LE(FLOCK_PID);
      return r;
    },
    lseek: (fd, offset, whence) => Number(lseek(fd, offset, whence)),
    fallocate: (fd, mode, offset, length) => fallocate(fd, mode, offset, length) as number,
    errno: () => koffi.errno(),
  };
}
