/**
 * blkdebug above a format node (`driver=blkdebug,image.driver=qcow2,align=...,opt-write-zero=...`):
 * a filter whose request limits change how zero writes reach the image. QEMU's block layer
 * (bdrv_co_do_pwrite_zeroes) cuts a zero write at multiples of the zero-write alignment
 * (`opt-write-zero`, at least `align`) and at `max-write-zero`, the unaligned head in pieces of at
 * most `max-transfer`; blkdebug refuses every piece shorter than the alignment (ENOTSUP, "so that
 * we test the fallback"), and the block layer then writes those pieces as a buffer of zeros — data,
 * not zero clusters. Reads, writes and discards pass through: how they are split does not change
 * what they do to a qcow2 image.
 */
import type { GuestDisk } from '../api.ts';

export interface BlkdebugLimits {
  align: number;
  maxTransfer: number;
  optWriteZero: number;
  maxWriteZero: number;
}

/** blkdebug's limit options (block/blkdebug.c blkdebug_open), from a node's flat options. */
export function limitsOf(o: Map<string, string>): BlkdebugLimits {
  const n = (k: string): number => {
    const v = o.get(k);
    if (v === undefined) return 0;
    const m = /^(\d+)([kKmMgGtT]?)$/.exec(v);
    if (!m) return Number.NaN;
    const mul = { '': 1, k: 1024, m: 1 << 20, g: 1 << 30, t: 2 ** 40 }[m[2]!.toLowerCase()]!;
    return Number(m[1]) * mul;
  };
  return {
    align: n('align') || 1,
    maxTransfer: n('max-transfer'),
    optWriteZero: n('opt-write-zero'),
    maxWriteZero: n('max-write-zero'),
  };
}

export function withBlkdebugLimits(disk: GuestDisk, lim: BlkdebugLimits): GuestDisk {
  const alignment = Math.max(lim.optWriteZero, lim.align);
  if (alignment <= 1) return disk;
  const maxTransfer = lim.maxTransfer || Number.MAX_SAFE_INTEGER;
  const maxZero = lim.maxWriteZero
    ? Math.floor(lim.maxWriteZero / alignment) * alignment || alignment
    : Number.MAX_SAFE_INTEGER;
  const writeZeroes = (offset: number, bytes: number, opts?: { unmap?: boolean }): void => {
    let head = offset % alignment;
    const tail = (offset + bytes) % alignment;
    while (bytes > 0) {
      let num = bytes;
      if (head) {
        num = Math.min(bytes, maxTransfer, alignment - head);
        head = (head + num) % alignment;
      } else if (tail && num > alignment) num -= tail;
      num = Math.min(num, maxZero);
      if (num < alignment) {
        // blkdebug: ENOTSUP below the alignment; the block layer's fallback writes zeros.
        for (let o = 0; o < num; o += maxTransfer) {
          const n = Math.min(maxTransfer, num - o, 1 << 26);
          disk.write(offset + o, new Uint8Array(n));
        }
      } else disk.writeZeroes(offset, num, opts);
      offset += num;
      bytes -= num;
    }
  };
  return new Proxy(disk, {
    get(target, key): unknown {
      if (key === 'writeZeroes') return writeZeroes;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
