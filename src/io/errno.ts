/**
 * errno numbers, names and strerror() texts (Linux, glibc's wording) for the failures the block
 * layer reports in QEMU's words ("Input/output error").
 */
import { Qcow2Error } from '../errors.ts';

const ERRNO: Record<number, [string, string]> = {
  1: ['EPERM', 'Operation not permitted'],
  2: ['ENOENT', 'No such file or directory'],
  5: ['EIO', 'Input/output error'],
  12: ['ENOMEM', 'Cannot allocate memory'],
  13: ['EACCES', 'Permission denied'],
  22: ['EINVAL', 'Invalid argument'],
  27: ['EFBIG', 'File too large'],
  28: ['ENOSPC', 'No space left on device'],
  30: ['EROFS', 'Read-only file system'],
  95: ['ENOTSUP', 'Operation not supported'],
};

export function strerror(errno: number): string {
  return ERRNO[errno]?.[1] ?? `Unknown error ${errno}`;
}

export function errnoName(errno: number): string {
  return ERRNO[errno]?.[0] ?? `E${errno}`;
}

/** strerror() of the errno an error carries (`data.errno`, a name), or EIO's. */
export function strerrorOf(e: unknown): string {
  const name = e instanceof Qcow2Error ? e.data.errno : undefined;
  const hit = Object.values(ERRNO).find(([n]) => n === name);
  return hit ? hit[1] : 'Input/output error';
}
