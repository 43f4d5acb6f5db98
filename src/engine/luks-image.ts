/**
 * A raw LUKS image (QEMU's `luks` format driver, block/crypto.c): a LUKS1 header and its key
 * material from offset 0 up to the payload offset, then the encrypted guest data. Creation writes
 * the header with one key slot (crypto/luks.ts) and sizes the file to payload offset + disk size;
 * the payload is left as the file system gives it (a hole), as QEMU leaves it.
 */
import { createLuksHeader, type CreateLuksOptions } from '../crypto/luks.ts';
import { FileDevice } from '../io/device.ts';

export interface CreateLuksImageOptions extends CreateLuksOptions {
  /** QEMU's preallocation for the payload: off (default), falloc or full. */
  preallocation?: 'off' | 'falloc' | 'full';
}

export function createLuksImage(
  file: string,
  size: number,
  secret: Uint8Array,
  opts: CreateLuksImageOptions = {},
): void {
  const created = createLuksHeader(secret, opts);
  const dev = FileDevice.create(file, { lock: false });
  try {
    dev.write(created.bytes, 0);
    const end = created.length + size;
    if (opts.preallocation === 'full') {
      const zeros = new Uint8Array(Math.min(size, 1 << 20));
      for (let off = created.length; off < end; off += zeros.length)
        dev.write(zeros.subarray(0, Math.min(zeros.length, end - off)), off);
    } else if (opts.preallocation === 'falloc' && size > 0) dev.allocate(created.length, size);
    else dev.truncate(end);
    dev.flush();
  } finally {
    dev.close();
  }
}
