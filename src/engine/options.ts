/**
 * The one validation of create options and of resize requests (QEMU's qcow2_co_create and
 * qcow2_co_truncate rules, with qemu-img's wording). The CLI maps its arguments to `CreateOptions`
 * and lets these rules decide; the image facade applies them before anything is written.
 */
import type { CreateOptions, OpenOptions } from '../api.ts';
import { ArgumentError, UnsupportedError } from '../errors.ts';
import { alignUp } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { l1EntriesFor } from '../format/header.ts';

/** Create options with the defaults applied and the derived geometry. */
export interface CreateGeometry {
  version: 2 | 3;
  clusterSize: number;
  clusterBits: number;
  /** refcount_order: refcount width = 2^order bits. */
  refcountOrder: number;
  /** Virtual size rounded up to 512 (qemu-img create's rule). */
  size: number;
}

function invalid(message: string, data: Record<string, unknown> = {}): never {
  throw new ArgumentError('INVALID_OPTION', message, data);
}

/** Check a set of create options; throws ArgumentError with qemu-img's message. */
export function validateCreateOptions(opts: CreateOptions): CreateGeometry {
  const version = (opts.compat ?? '1.1') === '0.10' ? 2 : 3;
  const clusterSize = opts.clusterSize ?? 65536;
  const clusterBits = Math.log2(clusterSize);
  if (
    !Number.isInteger(clusterBits) ||
    clusterBits < C.MIN_CLUSTER_BITS ||
    clusterBits > C.MAX_CLUSTER_BITS
  ) {
    throw new ArgumentError('BAD_CLUSTER_SIZE', 'Cluster size must be a power of two between 512 and 2048k', {
      cluster_size: clusterSize,
    });
  }
  const refcountBits = opts.refcountBits ?? 16;
  const order = Math.log2(refcountBits);
  if (!Number.isInteger(order) || order < 0 || order > 6) {
    throw new ArgumentError(
      'BAD_REFCOUNT_BITS',
      'Refcount width must be a power of two and may not exceed 64 bits',
      { refcount_bits: refcountBits },
    );
  }
  if (version === 2) {
    // Every v3-only feature, in the order QEMU tests them.
    if (refcountBits !== 16)
      throw new ArgumentError(
        'BAD_REFCOUNT_BITS',
        'Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)',
        { refcount_bits: refcountBits },
      );
    if (opts.lazyRefcounts)
      invalid(
        'Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)',
      );
    if (opts.extendedL2)
      invalid(
        'Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)',
      );
    if (opts.compressionType === 'zstd') invalid("Compression type 'zstd' requires compat=1.1 or above");
    if (opts.dataFile !== undefined)
      invalid(
        'Data file is only supported with compatibility level 1.1 and above (use version=v3 or greater)',
      );
  }
  if (opts.extendedL2 && clusterBits < 14) {
    throw new ArgumentError(
      'BAD_CLUSTER_SIZE',
      'Extended L2 entries are only supported with cluster sizes of at least 16384 bytes',
      { cluster_size: clusterSize },
    );
  }
  if (opts.dataFileRaw && opts.dataFile === undefined) invalid('data-file-raw requires a data file');
  if (opts.encrypt && opts.dataFile !== undefined && opts.encrypt.format === 'aes')
    invalid('AES encryption is not supported with an external data file');
  const size = alignUp(opts.size, 512);
  if (l1EntriesFor(size, clusterBits, !!opts.extendedL2) > C.QCOW_MAX_L1_SIZE / 8) {
    throw new ArgumentError(
      'IMAGE_TOO_BIG',
      // qcow2_co_create's wording (the L1 table would exceed QCOW_MAX_L1_SIZE).
      "The image size is too large for file format 'qcow2' (try using a larger cluster size)",
      { size, clusterSize },
    );
  }
  return { version, clusterSize, clusterBits, refcountOrder: order, size };
}

/** The shrink rule (qemu-img resize): a smaller size needs `shrink`. Shared by every disk format. */
export function checkShrink(oldSize: number, newSize: number, shrink: boolean): void {
  if (newSize < oldSize && !shrink) {
    throw new ArgumentError('SHRINK_NEEDS_FLAG', 'Use the --shrink option to perform a shrink operation.', {
      size: newSize,
    });
  }
}

/** qcow2_co_truncate's rules for a new size (qemu-img create rounds up instead, itself). */
export function checkQcow2Resize(
  geometry: { clusterBits: number; extendedL2: boolean; version: number; nbSnapshots: number },
  oldSize: number,
  newSize: number,
  shrink: boolean,
): void {
  if (!Number.isSafeInteger(newSize) || newSize < 0)
    throw new ArgumentError('BAD_SIZE', `Invalid size ${newSize}`, { size: newSize });
  if (newSize % 512 !== 0)
    throw new ArgumentError('BAD_SIZE', 'The new size must be a multiple of 512', { size: newSize });
  if (newSize === oldSize) return;
  if (geometry.nbSnapshots > 0 && geometry.version < 3)
    throw new UnsupportedError('RESIZE_WITH_SNAPSHOTS', "Can't resize a v2 image which has snapshots", {});
  if (l1EntriesFor(newSize, geometry.clusterBits, geometry.extendedL2) > C.QCOW_MAX_L1_SIZE / 8)
    throw new ArgumentError('IMAGE_TOO_BIG', `Image size ${newSize} is too large`, { size: newSize });
  checkShrink(oldSize, newSize, shrink);
}

/** QEMU's minimum cache sizes, in tables (block/qcow2.h MIN_L2_CACHE_SIZE, MIN_REFCOUNT_CACHE_SIZE). */
export const MIN_L2_CACHE_TABLES = 2;
export const MIN_REFCOUNT_CACHE_TABLES = 4;

/** The runtime cache options of `OpenOptions`. */
export type CacheOptions = NonNullable<OpenOptions['cache']>;

function sizeParam(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
    invalid(`Parameter '${name}' expects a non-negative number below 2^64`, { [name]: v });
}

/**
 * The cache budget for an image (read_cache_sizes and qcow2_update_options_prepare): the L2 cache
 * holds min(l2-cache-size, what covers the whole disk) / entry size tables, at least 2; the
 * refcount cache refcount-cache-size / cluster size blocks, at least 4. This engine caches whole
 * L2 tables, so the entry size is validated as QEMU does (a power of two from 512 to the cluster
 * size) and the count is taken in whole tables. An option left unset keeps `defaults`.
 * cache-clean-interval is accepted and validated; a synchronous engine has no idle timer.
 */
/**
 * QEMU's read_cache_sizes for `cache-size`: at most one of the two caches may be given with it and
 * not exceed it, the other gets the rest; with neither, the L2 cache takes what covers the whole
 * disk and the refcount cache the remainder (at least its minimum of 4 clusters).
 */
function splitCombinedCache(
  opts: CacheOptions,
  geometry: { clusterSize: number; diskSize: number; extendedL2: boolean },
): CacheOptions {
  const total = opts.cacheSize!;
  sizeParam('cache-size', total);
  const { l2CacheSize: l2, refcountCacheSize: rc } = opts;
  if (l2 !== undefined && rc !== undefined)
    invalid('cache-size, l2-cache-size and refcount-cache-size may not be set at the same time', {});
  if (l2 !== undefined && l2 > total) invalid('l2-cache-size may not exceed cache-size', {});
  if (rc !== undefined && rc > total) invalid('refcount-cache-size may not exceed cache-size', {});
  if (l2 !== undefined) return { ...opts, refcountCacheSize: total - l2 };
  if (rc !== undefined) return { ...opts, l2CacheSize: total - rc };
  const cs = geometry.clusterSize;
  const maxL2Cache = alignUp(Math.ceil(geometry.diskSize / cs) * (geometry.extendedL2 ? 16 : 8), cs);
  const minRefcount = MIN_REFCOUNT_CACHE_TABLES * cs;
  if (total >= maxL2Cache + minRefcount)
    return { ...opts, l2CacheSize: maxL2Cache, refcountCacheSize: total - maxL2Cache };
  const refcount = Math.min(total, minRefcount);
  return { ...opts, l2CacheSize: total - refcount, refcountCacheSize: refcount };
}

export function cacheBudget(
  opts: CacheOptions | undefined,
  geometry: { clusterSize: number; diskSize: number; extendedL2: boolean },
  defaults: { l2Tables: number; refcountBlocks: number },
): { l2Tables: number; refcountBlocks: number } {
  if (!opts) return defaults;
  const cs = geometry.clusterSize;
  if (opts.cacheSize !== undefined) opts = splitCombinedCache(opts, geometry);
  sizeParam('l2-cache-size', opts.l2CacheSize);
  sizeParam('refcount-cache-size', opts.refcountCacheSize);
  sizeParam('l2-cache-entry-size', opts.l2CacheEntrySize);
  const entry = opts.l2CacheEntrySize ?? cs;
  if (entry < 512 || entry > cs || (entry & (entry - 1)) !== 0)
    invalid(`L2 cache entry size must be a power of two between 512 and the cluster size (${cs})`, {
      'l2-cache-entry-size': entry,
    });
  const interval = opts.cacheCleanInterval;
  if (interval !== undefined && (!Number.isSafeInteger(interval) || interval < 0))
    invalid("Parameter 'cache-clean-interval' expects a non-negative number", {
      'cache-clean-interval': interval,
    });
  if (interval !== undefined && interval > 0xffffffff)
    invalid('Cache clean interval too big', { 'cache-clean-interval': interval });
  let l2Tables = defaults.l2Tables;
  if (opts.l2CacheSize !== undefined) {
    // A cache larger than the whole mapping is never needed (max_l2_cache).
    const l2EntryBytes = geometry.extendedL2 ? 16 : 8;
    const maxL2Cache = alignUp(Math.ceil(geometry.diskSize / cs) * l2EntryBytes, cs);
    l2Tables = Math.max(MIN_L2_CACHE_TABLES, Math.floor(Math.min(maxL2Cache, opts.l2CacheSize) / cs));
  }
  let refcountBlocks = defaults.refcountBlocks;
  if (opts.refcountCacheSize !== undefined)
    refcountBlocks = Math.max(MIN_REFCOUNT_CACHE_TABLES, Math.floor(opts.refcountCacheSize / cs));
  return { l2Tables, refcountBlocks };
}
