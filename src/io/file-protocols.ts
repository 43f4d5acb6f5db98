/**
 * QEMU's protocol drivers over a host file (block/file-posix.c), as `driver=` names them: `file`
 * wants a regular file; `host_device` and `host_cdrom` want a character or block device. The file
 * is opened first, as raw_open_common does (so a directory opened read-write is refused as "Is a
 * directory"), then its kind is checked. This module only answers whether a file may be opened by
 * a driver; opening it is FileDevice's work, and which options a node takes is block-tree.ts's.
 */
import * as fs from 'node:fs';
import { hostPath } from './device.ts';
import { nodeErrorText } from './errno.ts';

export const FILE_PROTOCOLS = ['file', 'host_device', 'host_cdrom'] as const;
export type FileProtocol = (typeof FILE_PROTOCOLS)[number];

export function isFileProtocol(d: string | undefined): d is FileProtocol {
  return (FILE_PROTOCOLS as readonly string[]).includes(d ?? '');
}

/** QEMU's message when `driver` may not open `file`, or undefined when it may. */
export function fileProtocolError(driver: FileProtocol, file: string, readOnly: boolean): string | undefined {
  let st: fs.Stats;
  try {
    const fd = fs.openSync(hostPath(file), readOnly ? 'r' : 'r+');
    try {
      st = fs.fstatSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    return `Could not open '${file}': ${nodeErrorText(e)}`;
  }
  if (driver === 'file')
    return st.isFile() ? undefined : `'file' driver requires '${file}' to be a regular file`;
  return st.isCharacterDevice() || st.isBlockDevice()
    ? undefined
    : `'${driver}' driver requires '${file}' to be either a character or block device`;
}
