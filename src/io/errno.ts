/**
 * errno numbers, names and strerror() texts (Linux, glibc's wording): the one table for the failures
 * the block layer reports in QEMU's words ("Input/output error") and for file opens
 * ("Could not open 'F': Is a directory").
 */
import { Qcow2Error } from '../errors.ts';

const ERRNO: Record<number, [string, string]> = {
  1: ['EPERM', 'Operation not permitted'],
  2: ['ENOENT', 'No such file or directory'],
  5: ['EIO', 'Input/output error'],
  6: ['ENXIO', 'No such device or address'],
  12: ['ENOMEM', 'Cannot allocate memory'],
  13: ['EACCES', 'Permission denied'],
  16: ['EBUSY', 'Device or resource busy'],
  19: ['ENODEV', 'No such device'],
  20: ['ENOTDIR', 'Not a directory'],
  21: ['EISDIR', 'Is a directory'],
  22: ['EINVAL', 'Invalid argument'],
  24: ['EMFILE', 'Too many open files'],
  26: ['ETXTBSY', 'Text file busy'],
  27: ['EFBIG', 'File too large'],
  28: ['ENOSPC', 'No space left on device'],
  30: ['EROFS', 'Read-only file system'],
  36: ['ENAMETOOLONG', 'File name too long'],
  40: ['ELOOP', 'Too many levels of symbolic links'],
  95: ['ENOTSUP', 'Operation not supported'],
};

function textOfName(name: string | undefined): string | undefined {
  return Object.values(ERRNO).find(([n]) => n === name)?.[1];
}

export function strerror(errno: number): string {
  return ERRNO[errno]?.[1] ?? `Unknown error ${errno}`;
}

export function errnoName(errno: number): string {
  return ERRNO[errno]?.[0] ?? `E${errno}`;
}

/** strerror() of the errno an error carries (`data.errno`, a name), or EIO's. */
export function strerrorOf(e: unknown): string {
  return (
    textOfName(e instanceof Qcow2Error && typeof e.data.errno === 'string' ? e.data.errno : undefined) ??
    'Input/output error'
  );
}

/** strerror() of a Node file-system error by its code, as QEMU prints it; Node's own message else. */
export function nodeErrorText(e: unknown): string {
  return textOfName((e as NodeJS.ErrnoException).code) ?? (e instanceof Error ? e.message : String(e));
}
