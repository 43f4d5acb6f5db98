/**
 * QEMU 7.2's block driver names, as `qemu-img --help` lists them ("Supported formats"): a name
 * outside this list is one QEMU does not know at all ("Invalid format name", "Unknown driver");
 * a name inside it that this engine cannot open is refused as unsupported, not as unknown.
 */
export const QEMU_FORMAT_DRIVERS: readonly string[] = (
  'blkdebug blklogwrites blkverify bochs cloop compress copy-before-write copy-on-read dmg file ' +
  'ftp ftps gluster host_cdrom host_device http https iscsi iser luks nbd nfs null-aio null-co nvme ' +
  'parallels preallocate qcow qcow2 qed quorum raw rbd replication snapshot-access ssh throttle vdi ' +
  'vhdx vmdk vpc vvfat'
).split(' ');

/**
 * QEMU's protocol drivers over a host file (block/file-posix.c), as `driver=` names them: `file`
 * wants a regular file; `host_device` and `host_cdrom` want a character or block device. The file
 * is opened first, as raw_open_common does (so a directory opened read-write is refused as "Is a
 * directory"), then its kind is checked. Returns QEMU's message, or undefined when it may open.
 */
import * as fs from 'node:fs';
import { hostPath } from '../io/device.ts';
import { strerror } from '../io/strerror.ts';

export const PROTOCOL_DRIVERS = ['file', 'host_device', 'host_cdrom'] as const;
export type ProtocolDriver = (typeof PROTOCOL_DRIVERS)[number];

export function isProtocolDriver(d: string | undefined): d is ProtocolDriver {
  return (PROTOCOL_DRIVERS as readonly string[]).includes(d ?? '');
}

export function protocolOpenError(
  driver: ProtocolDriver,
  file: string,
  readOnly: boolean,
): string | undefined {
  let st: fs.Stats;
  try {
    const fd = fs.openSync(hostPath(file), readOnly ? 'r' : 'r+');
    try {
      st = fs.fstatSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    return `Could not open '${file}': ${strerror(e as NodeJS.ErrnoException)}`;
  }
  if (driver === 'file')
    return st.isFile() ? undefined : `'file' driver requires '${file}' to be a regular file`;
  return st.isCharacterDevice() || st.isBlockDevice()
    ? undefined
    : `'${driver}' driver requires '${file}' to be either a character or block device`;
}
