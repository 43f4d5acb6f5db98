/**
 * qemu-io's `reopen [(-r|-w)] [-c cache] [-o options]` (qemu-io-cmds.c reopen_f over
 * bdrv_reopen): the options a node can change at runtime change; any other option must keep the
 * value it had at open, or the reopen fails with "Cannot change the option 'NAME'", NAME relative to
 * the node it belongs to (`file.node-name` and `backing.node-name` are both `node-name`).
 */
import type { GuestDisk } from '../api.ts';
import { backingFormat } from '../format/header.ts';
import { all, has, last, parseOptString } from './args.ts';
import { isQcow2 } from './common.ts';
import { CACHE_MODES, CmdFailed, cacheModeWritesThrough, type Session } from './io-session.ts';
import type { Parsed } from './args.ts';

/** Options of the generic block layer (bdrv_runtime_opts) that are booleans. */
const BOOL_OPTIONS = ['read-only', 'auto-read-only', 'cache.direct', 'cache.no-flush', 'force-share'];

/** Options a node may change at reopen (generic ones and qcow2's runtime options). */
function changeable(key: string): boolean {
  const k = key.replace(/^((file|backing|data-file)\.)+/, '');
  return (
    [
      'read-only',
      'auto-read-only',
      'cache.direct',
      'cache.no-flush',
      'detect-zeroes',
      'discard',
      'force-share',
      'lazy-refcounts',
      'pass-discard-request',
      'pass-discard-snapshot',
      'pass-discard-other',
      'cache-size',
      'l2-cache-size',
      'l2-cache-entry-size',
      'refcount-cache-size',
      'cache-clean-interval',
      'locking',
      'aio',
    ].includes(k) || k.startsWith('overlap-check')
  );
}

/** The values a reopen must not change: what was given at open, and what the open filled in. */
function currentOptions(s: Session, d: GuestDisk): Map<string, string> {
  const cur = new Map<string, string>();
  cur.set('driver', d.format);
  cur.set('file.driver', 'file');
  // (without a backing format extension QEMU probes the backing file: qcow2 here, as a rule)
  if (isQcow2(d) && d.header.backingFile !== undefined)
    cur.set('backing.driver', backingFormat(d.header) ?? 'qcow2');
  for (const [k, v] of s.openOptions) cur.set(k, v);
  return cur;
}

/** Children are checked after their parent (bdrv_reopen_queue_child): shallow keys first. */
function depth(k: string): number {
  return /^((file|backing|data-file)\.)*/.exec(k)![0].split('.').length - 1;
}

export function reopen(s: Session, p: Parsed): void {
  const fail = (msg: string): never => {
    s.io.err(`qemu-io: ${msg}\n`);
    throw new CmdFailed();
  };
  if (has(p, 'r') && has(p, 'w')) fail('Only one -r/-w option may be given');
  const cache = last(p, 'c');
  if (cache !== undefined && !CACHE_MODES.includes(cache)) fail(`Invalid cache option: ${cache}`);
  const o = parseOptString(all(p, 'o').join(','));
  if (o.has('read-only') && (has(p, 'r') || has(p, 'w'))) fail("Cannot set both -r/-w and 'read-only'");
  if (cache !== undefined && (o.has('cache.direct') || o.has('cache.no-flush')))
    fail('Cannot set both -c and the cache options');
  const bool = (k: string): boolean | undefined => {
    const v = o.get(k);
    if (v === undefined) return undefined;
    if (v !== 'on' && v !== 'off') fail(`Parameter '${k}' expects 'on' or 'off'`);
    return v === 'on';
  };
  for (const k of BOOL_OPTIONS) bool(k);
  const d = s.disk!;
  const cur = currentOptions(s, d);
  for (const k of [...o.keys()].sort((a, b) => depth(a) - depth(b))) {
    if (changeable(k)) continue;
    if (cur.get(k) !== o.get(k))
      fail(`Cannot change the option '${k.replace(/^((file|backing|data-file)\.)+/, '')}'`);
  }
  const lazy = bool('lazy-refcounts');
  const readOnly = has(p, 'r') ? true : has(p, 'w') ? false : (bool('read-only') ?? d.readOnly);
  if (readOnly !== d.readOnly) {
    const file = d.filename;
    const format = d.format;
    d.close();
    s.disk = undefined;
    s.open(file, format, readOnly);
  }
  if (lazy !== undefined && s.disk && isQcow2(s.disk)) {
    try {
      s.disk.setLazyRefcounts(lazy);
    } catch (e) {
      fail(e instanceof Error ? e.message : String(e));
    }
  }
  if (cache !== undefined) s.writethrough = cacheModeWritesThrough(cache);
}
