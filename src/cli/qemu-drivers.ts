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
