/**
 * Version 1 of the format ("qcow", magic QFI\xfb with version 1) is not qcow2: QEMU probes it to
 * its older qcow driver (block/qcow.c, qcow_probe), whose open (qcow_open) validates the v1 header
 * and which offers no check. We have no qcow driver; this module only says what QEMU's open would
 * say of such a header, so that `check` refuses it in QEMU's words (exit 1) or, when the qcow driver
 * would open it, answers as qemu-img does for any format without checks (exit 63).
 *
 * v1 header (big-endian): magic u32 @0, version u32 @4, backing_file_offset u64 @8,
 * backing_file_size u32 @16, mtime u32 @20, size u64 @24, cluster_bits u8 @32, l2_bits u8 @33,
 * padding u16 @34, crypt_method u32 @36, l1_table_offset u64 @40 (48 bytes).
 */
import { QCOW_MAGIC } from '../format/constants.ts';
import { UnsupportedError } from '../errors.ts';
import { FileDevice } from '../io/device.ts';

export const QCOW1_HEADER_SIZE = 48;

/** Does the file start like a qcow (v1) image (qcow_probe: the magic and version 1, 48 bytes)? */
export function isQcow1(b: Uint8Array): boolean {
  if (b.length < QCOW1_HEADER_SIZE) return false;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return dv.getUint32(0) === QCOW_MAGIC && dv.getUint32(4) === 1;
}

/**
 * qcow_open's refusal of a v1 header, in its words, or undefined when it would open the image.
 * The checks run in qcow_open's order.
 */
export function qcow1OpenError(b: Uint8Array, opts: { keyAvailable?: boolean } = {}): string | undefined {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const backingOffset = dv.getBigUint64(8);
  const backingSize = dv.getUint32(16);
  const size = dv.getBigUint64(24);
  const clusterBits = dv.getUint8(32);
  const l2Bits = dv.getUint8(33);
  const crypt = dv.getUint32(36);
  if (size <= 1n) return 'Image size is too small (must be at least 2 bytes)';
  if (clusterBits < 9 || clusterBits > 16) return 'Cluster size must be between 512 and 64k';
  // l2_bits counts 8-byte entries: the table is 512 bytes to 64 KiB.
  if (l2Bits < 9 - 3 || l2Bits > 16 - 3) return 'L2 table size must be between 512 and 64k';
  if (crypt !== 0) {
    if (crypt !== 1) return 'invalid encryption method in qcow header';
    if (!opts.keyAvailable) return "Parameter 'encrypt.key-secret' is required for cipher";
  }
  const shift = BigInt(clusterBits + l2Bits);
  const max = (1n << 64n) - 1n;
  if (size > max - (1n << shift)) return 'Image too large';
  const l1Size = (size + (1n << shift) - 1n) >> shift;
  if (l1Size > BigInt(Math.floor(0x7fffffff / 8))) return 'Image too large';
  if (backingOffset !== 0n && backingSize > 1023) return 'Backing file name too long';
  return undefined;
}

/** The typed error for a qcow (v1) file that QEMU's qcow driver would refuse to open, if any. */
export function qcow1Refusal(file: string, keyAvailable: boolean): UnsupportedError | undefined {
  const dev = FileDevice.open(file, { readOnly: true, lock: false });
  let b: Uint8Array;
  try {
    b = new Uint8Array(Math.min(dev.size(), QCOW1_HEADER_SIZE));
    dev.read(b, 0);
  } finally {
    dev.close();
  }
  if (!isQcow1(b)) return undefined;
  const why = qcow1OpenError(b, { keyAvailable });
  return why === undefined
    ? undefined
    : new UnsupportedError('UNSUPPORTED_VERSION', `Could not open '${file}': ${why}`, {
        format: 'qcow',
        version: 1,
      });
}
