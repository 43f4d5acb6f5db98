/**
 * QEMU's qcow2 runtime cache options as `--image-opts` carries them (qemu-img and qemu-io):
 * `l2-cache-size`, `refcount-cache-size`, `l2-cache-entry-size` (sizes, with qemu's k/M/G
 * suffixes) and `cache-clean-interval` (seconds). Mapped here; the engine validates them
 * (engine/options.ts `cacheBudget`).
 */
import type { OpenOptions } from '../api.ts';
import { ArgumentError } from '../errors.ts';
import { parseOptString, parseSize } from './args.ts';

const SIZE_KEYS = [
  ['cache-size', 'cacheSize'],
  ['l2-cache-size', 'l2CacheSize'],
  ['refcount-cache-size', 'refcountCacheSize'],
  ['l2-cache-entry-size', 'l2CacheEntrySize'],
] as const;

/** The cache options of an --image-opts string; undefined when it names none. */
export function cacheOptionsOf(spec: string): OpenOptions['cache'] {
  const o = parseOptString(spec);
  const cache: NonNullable<OpenOptions['cache']> = {};
  let any = false;
  for (const [key, field] of SIZE_KEYS) {
    const v = o.get(key);
    if (v === undefined) continue;
    const n = parseSize(v);
    if (typeof n !== 'number')
      throw new ArgumentError(
        'INVALID_OPTION',
        `Parameter '${key}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.`,
        { [key]: v },
      );
    cache[field] = n;
    any = true;
  }
  const interval = o.get('cache-clean-interval');
  if (interval !== undefined) {
    if (!/^[0-9]+$/.test(interval))
      throw new ArgumentError('INVALID_OPTION', "Parameter 'cache-clean-interval' expects a number", {
        'cache-clean-interval': interval,
      });
    cache.cacheCleanInterval = Number(interval);
    any = true;
  }
  return any ? cache : undefined;
}
