/**
 * The image layout a run uses: the qcow2 creation options the layout arbitrary draws and every
 * implementation must honour. Pure data, plus its two spellings: `qemu-img create -o …` and the
 * engine's `CreateOptions`.
 */
import type { CreateOptions } from '../src/api.ts';
import type { BitmapLayout } from './model/bitmaps.ts';

export type CompatLevel = '0.10' | '1.1';
export type CompressionType = 'zlib' | 'zstd';
export type BackingFormat = 'qcow2' | 'raw';
export type EncryptFormat = 'aes' | 'luks';

/** The password of encrypted images, and the secret object's id on QEMU's command lines. */
export const FUZZ_SECRET = 'fuzz';
export const SECRET_ID = 's0';

/** A range written into the backing file when it is created (`qemu-io write -P`). */
export interface BackingWrite {
  offset: number;
  length: number;
  pattern: number;
}

/**
 * A backing file, created with qemu-img/qemu-io before the image (whatever the implementation),
 * as `BACKING_NAME` in the image's directory; the image names it relatively (`-b base.img -F fmt`).
 */
export interface BackingLayout {
  format: BackingFormat;
  /** Its virtual size in bytes (a multiple of 512): smaller, equal or larger than the image's. */
  size: number;
  /** Ranges written into it (inside `size`), in order; the rest reads as zeros. */
  writes: BackingWrite[];
  /** The image names no backing format: it is probed (runner/backing-format.ts). */
  probed?: boolean;
}

/** The backing file's name, relative to the image's directory. */
export const BACKING_NAME = 'base.img';

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
  /** A backing file (absent: none). */
  backing?: BackingLayout;
  /** Encryption with the password FUZZ_SECRET (absent: none). */
  encrypt?: EncryptFormat;
  /** Persistent dirty bitmaps added with `qemu-img bitmap --add` after creation (v3 only). */
  bitmaps?: BitmapLayout[];
  /**
   * Tiny metadata caches when the implementation opens the image (QEMU's runtime options
   * `l2-cache-size` / `refcount-cache-size`, in bytes; the engine's `OpenOptions.cache`), so that
   * cache eviction and write-back happen in short sequences (absent: the defaults).
   */
  cache?: { l2CacheSize: number; refcountCacheSize: number };
}

/** `l2-cache-size=N,refcount-cache-size=M` (empty without tiny caches). */
export function cacheOptions(layout: ImageLayout): string {
  return layout.cache
    ? `l2-cache-size=${layout.cache.l2CacheSize},refcount-cache-size=${layout.cache.refcountCacheSize}`
    : '';
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
  if (layout.encrypt) {
    opts.push(`encrypt.format=${layout.encrypt}`, `encrypt.key-secret=${SECRET_ID}`);
    if (layout.encrypt === 'luks') opts.push(`encrypt.iter-time=${LUKS_ITER_TIME_MS}`);
  }
  if (layout.backing) {
    opts.push(`backing_file=${BACKING_NAME}`, `backing_fmt=${layout.backing.format}`);
  }
  return opts.join(',');
}

/**
 * PBKDF2 time of a LUKS layout's key slot, in ms: every open of the image (each reopen step, each
 * qemu-img oracle) pays it again. 1 ms still gives thousands of iterations (QEMU: 4300 at 1 ms on
 * this machine, and never under 1000), where 10 ms spent a tenth of the op loop's CPU unlocking.
 */
const LUKS_ITER_TIME_MS = 1;

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
    ...(layout.encrypt
      ? {
          encrypt: {
            format: layout.encrypt,
            secret: new TextEncoder().encode(FUZZ_SECRET),
            ...(layout.encrypt === 'luks' ? { iterTimeMs: LUKS_ITER_TIME_MS } : {}),
          },
        }
      : {}),
    ...(layout.backing ? { backingFile: BACKING_NAME, backingFormat: layout.backing.format } : {}),
  };
}

/** `--object secret,…` for qemu-img / qemu-io (and the qcow2 CLI) when the image is encrypted. */
export function qemuObjectArgs(layout: ImageLayout): string[] {
  return layout.encrypt ? ['--object', `secret,id=${SECRET_ID},data=${FUZZ_SECRET}`] : [];
}

/**
 * How qemu-img / qemu-io name the image: `-f qcow2 PATH`, or for an encrypted image
 * `--image-opts driver=qcow2,file.filename=PATH,encrypt.key-secret=ID` (with qemuObjectArgs before).
 * The image operand is the last element.
 */
export function qemuImageArgs(layout: ImageLayout, file: string): string[] {
  if (!layout.encrypt && !layout.cache) return ['-f', 'qcow2', file];
  return ['--image-opts', `driver=qcow2,file.filename=${file}${extraOpenOptions(layout)}`];
}

/** `,encrypt.key-secret=ID` and `,l2-cache-size=…` as the layout needs. */
function extraOpenOptions(layout: ImageLayout): string {
  const key = layout.encrypt ? `,encrypt.key-secret=${SECRET_ID}` : '';
  const cache = layout.cache ? `,${cacheOptions(layout)}` : '';
  return `${key}${cache}`;
}

/** The `-o` options of qemu-io's `open` command for the image. */
export function qemuOpenOptions(layout: ImageLayout): string {
  return `driver=qcow2${extraOpenOptions(layout)}`;
}

/**
 * A layout with qemu-img create's defaults (compat 1.1, 64 KiB clusters, 16-bit refcounts, zlib, no
 * extended L2 or lazy refcounts), 1 MiB, with `overrides` on top: the fixed layout of a short test.
 */
export function plainLayout(overrides: Partial<ImageLayout> = {}): ImageLayout {
  return {
    compat: '1.1',
    clusterBits: 16,
    refcountBits: 16,
    extendedL2: false,
    compressionType: 'zlib',
    lazyRefcounts: false,
    size: 1 << 20,
    ...overrides,
  };
}

/** A one-line description, for progress output and case comments. */
export function describeLayout(layout: ImageLayout): string {
  const b = layout.backing;
  const backing = b
    ? ` backing=${b.format}${b.probed ? '(probed)' : ''}:${b.size}(${b.writes.length} writes)`
    : '';
  const bitmaps = layout.bitmaps?.length
    ? ` bitmaps=${layout.bitmaps.map((m) => `${m.name}:g${m.granularityBits}${m.disabled ? ':off' : ''}`).join(',')}`
    : '';
  return `qcow2 ${qemuCreateOptions(layout)} size=${layout.size}${backing}${bitmaps}`;
}
