/**
 * glibc's strerror texts for the errno codes a file open meets, as QEMU prints them
 * ("Could not open 'F': Is a directory"); Node's own messages ("EISDIR: illegal operation on a
 * directory, open 'F'") are kept for any other code.
 */
const TEXTS: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  EROFS: 'Read-only file system',
  ELOOP: 'Too many levels of symbolic links',
  ENXIO: 'No such device or address',
  ENODEV: 'No such device',
  EBUSY: 'Device or resource busy',
  ETXTBSY: 'Text file busy',
  ENAMETOOLONG: 'File name too long',
  EMFILE: 'Too many open files',
  ENOSPC: 'No space left on device',
  EFBIG: 'File too large',
  EINVAL: 'Invalid argument',
};

export function strerror(e: NodeJS.ErrnoException): string {
  return (e.code !== undefined ? TEXTS[e.code] : undefined) ?? e.message;
}
