/**
 * The image layout a run uses: the qcow2 creation options the layout arbitrary draws and every
 * implementation must honour. Pure data, plus its two spellings: `qemu-img create -o …` and the
 * engine's `CreateOptions`.
 */
import type { CreateOptions } from '../src/api.ts';

export type CompatLevel = '0.10' | '1.1';
export type CompressionType = 'zlib' | 'zstd';

export interface ImageLayout {
  compat: CompatLevel;
  /** 9 (512 B) .. 21 (2 MiB). */
  clusterBits: number;
  /** 1, 2, 4, …, 64 (v2: always 16). */
  refcountBits: number;
  extendedL2: boolean;
  compressionType: CompressionType;
  lazyRefcounts: boolean;
  /** Virtual size in bytes, a multiple of 512. */
  size: number;
}

export function clusterSizeOf(layout: ImageLayout): number {
  return 2 ** layout.clusterBits;
}

/** The `-o` option list for `qemu-img create -f qcow2`. */
export function qemuCreateOptions(layout: ImageLayout): string {
  const opts = [
    `compat=${layout.compat}`,
    `cluster_size=${clusterSizeOf(layout)}`,
    `refcount_bits=${layout.refcountBits}`,
  ];
  if (layout.compat === '1.1') {
    opts.push(`extended_l2=${layout.extendedL2 ? 'on' : 'off'}`);
    opts.push(`compression_type=${layout.compressionType}`);
    opts.push(`lazy_refcounts=${layout.lazyRefcounts ? 'on' : 'off'}`);
  }
  return opts.join(',');
}

/** The same layout as the engine's create options (fsync off: scratch images). */
export function engineCreateOptions(layout: ImageLayout): CreateOptions {
  return {
    size: layout.size,
    compat: layout.compat,
    clusterSize: clusterSizeOf(layout),
    refcountBits: layout.refcountBits,
    extendedL2: layout.extendedL2,
    compressionType: layout.compressionType,
    lazyRefcounts: layout.lazyRefcounts,
    sync: false,
  };
}

/** A one-line description, for progress output and case comments. */
export function describeLayout(layout: ImageLayout): string {
  return `qcow2 ${qemuCreateOptions(layout)} size=${layout.size}`;
}
