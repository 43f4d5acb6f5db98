/**
 * QEMU's `compress` filter driver (block/filter-compress.c) over a qcow2 node: every write goes
 * down as a compressed write. Its request alignment is the child's cluster size, so the block
 * layer completes a partial cluster from what it reads now (read-modify-write) and the qcow2
 * driver always receives whole clusters (qcow2.txt: one compressed descriptor per guest cluster;
 * only the image's last cluster may be shorter). Reads pass through.
 */
import type { GuestDisk } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { Qcow2Image } from '../image.ts';

export function withCompression(disk: GuestDisk): GuestDisk {
  if (!(disk instanceof Qcow2Image)) {
    disk.close();
    // QEMU: the filter needs a child that supports compressed writes
    throw new Qcow2Error('NO_COMPRESSION', 'Compression is not supported for underlying format: raw', {});
  }
  const img = disk;
  const cs = img.clusterSize;
  const write = (offset: number, data: Uint8Array): void => {
    if (data.length === 0) return;
    const start = Math.floor(offset / cs) * cs;
    const end = Math.min(Math.ceil((offset + data.length) / cs) * cs, img.size);
    const buf = start === offset && end === offset + data.length ? data : img.read(start, end - start);
    if (buf !== data) buf.set(data, offset - start);
    img.writeCompressed(start, buf);
  };
  return new Proxy(img, {
    get(target, key): unknown {
      if (key === 'write') return write;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
