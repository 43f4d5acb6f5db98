/**
 * QEMU's blkdebug driver (block/blkdebug.c) as a block device: it wraps the device below a format
 * and fails requests on purpose. The format above raises named debug events (BLKDBG_EVENT in
 * block/qcow2*.c and raw-format.c: `l1_update`, `write_aio`, `cluster_free`, ...) through
 * `BlockDevice.event`; rules react to them:
 * - `[inject-error]` (event, errno, sector, once, immediately, iotype, state): when its event fires
 *   the rule becomes active (the rules of one event replace the active list), and every later
 *   request of a matching kind that covers `sector` (any request without one) fails with `errno`
 *   — only the first one when `once` is on (the rule is then removed);
 * - `[set-state]` (event, state, new_state): the state machine moves on; a rule with a `state`
 *   only applies in that state (the state starts at 1).
 * Rules come from a config file (QEMU's ini syntax: `[group]` then `key = "value"` lines) and
 * from options (`inject-error.0.event=...`, or the JSON lists of a `json:` name).
 */
import * as fs from 'node:fs';
import { IoError, Qcow2Error } from '../errors.ts';
import { Breakpoints } from './blkdebug-breakpoints.ts';
import type { BlockDevice } from './device.ts';
import { errnoName, strerror } from './errno.ts';
import type { FileExtent } from './holes.ts';

/** qapi BlkdebugEvent: every event name QEMU's drivers raise. */
export const BLKDEBUG_EVENTS = [
  'l1_update',
  'l1_grow_alloc_table',
  'l1_grow_write_table',
  'l1_grow_activate_table',
  'l2_load',
  'l2_update',
  'l2_update_compressed',
  'l2_alloc_cow_read',
  'l2_alloc_write',
  'read_aio',
  'read_backing_aio',
  'read_compressed',
  'write_aio',
  'write_compressed',
  'vmstate_load',
  'vmstate_save',
  'cow_read',
  'cow_write',
  'reftable_load',
  'reftable_grow',
  'reftable_update',
  'refblock_load',
  'refblock_update',
  'refblock_update_part',
  'refblock_alloc',
  'refblock_alloc_hookup',
  'refblock_alloc_write',
  'refblock_alloc_write_blocks',
  'refblock_alloc_write_table',
  'refblock_alloc_switch_table',
  'cluster_alloc',
  'cluster_alloc_bytes',
  'cluster_free',
  'flush_to_os',
  'flush_to_disk',
  'pwritev_rmw_head',
  'pwritev_rmw_after_head',
  'pwritev_rmw_tail',
  'pwritev_rmw_after_tail',
  'pwritev',
  'pwritev_zero',
  'pwritev_done',
  'empty_image_prepare',
  'l1_shrink_write_table',
  'l1_shrink_free_l2_clusters',
  'cor_write',
  'cluster_alloc_space',
  'none',
] as const;
export type BlkdebugEvent = (typeof BLKDEBUG_EVENTS)[number];

/** qapi BlkdebugIOType. */
const IO_TYPES = ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status'] as const;
type IoType = (typeof IO_TYPES)[number];
/** Without `iotype`, a rule fails reads, writes, zero writes, discards and flushes. */
const DEFAULT_IO_TYPES: ReadonlySet<IoType> = new Set(['read', 'write', 'write-zeroes', 'discard', 'flush']);

interface InjectRule {
  action: 'inject-error';
  event: BlkdebugEvent;
  state: number; // 0: any state
  errno: number;
  /** Byte offset a request must cover (sector * 512), or -1 for any request. */
  offset: number;
  once: boolean;
  ioTypes: ReadonlySet<IoType>;
}

interface SetStateRule {
  action: 'set-state';
  event: BlkdebugEvent;
  state: number;
  newState: number;
}

type Rule = InjectRule | SetStateRule;

/** One group of options (a config file section, or one element of a JSON rule list). */
export type RuleOptions = Map<string, string>;

function bool(v: string | undefined, key: string): boolean {
  if (v === undefined) return false;
  if (['on', 'yes', 'true'].includes(v)) return true;
  if (['off', 'no', 'false'].includes(v)) return false;
  throw new Qcow2Error('INVALID_OPTION', `Parameter '${key}' expects 'on' or 'off'`, { key, value: v });
}

function num(v: string | undefined, key: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n))
    throw new Qcow2Error('INVALID_OPTION', `Parameter '${key}' expects a number`, { key, value: v });
  return n;
}

function parseEvent(name: string | undefined): BlkdebugEvent {
  const ev = BLKDEBUG_EVENTS.find((e) => e === name);
  if (ev === undefined)
    throw new Qcow2Error('INVALID_OPTION', `Invalid parameter '${name ?? ''}'`, { event: name ?? '' });
  return ev;
}

/** A rule from its group name and options (blkdebug.c add_rule). */
export function parseRule(group: string, o: RuleOptions): Rule {
  const event = parseEvent(o.get('event'));
  const state = num(o.get('state'), 'state', 0);
  if (group === 'set-state') {
    return { action: 'set-state', event, state, newState: num(o.get('new_state'), 'new_state', 0) };
  }
  if (group !== 'inject-error')
    throw new Qcow2Error('INVALID_OPTION', `There is no option group '${group}'`, { group });
  const iotype = o.get('iotype');
  let ioTypes = DEFAULT_IO_TYPES;
  if (iotype !== undefined) {
    const t = IO_TYPES.find((x) => x === iotype);
    if (t === undefined) throw new Qcow2Error('INVALID_OPTION', `Invalid parameter '${iotype}'`, { iotype });
    ioTypes = new Set([t]);
  }
  const sector = num(o.get('sector'), 'sector', -1);
  return {
    action: 'inject-error',
    event,
    state,
    errno: num(o.get('errno'), 'errno', 5),
    offset: sector === -1 ? -1 : sector * 512,
    once: bool(o.get('once'), 'once'),
    ioTypes,
  };
}

/**
 * QEMU's config file syntax (qemu_config_parse): `[group]` starts a section, `key = "value"`
 * lines fill it, `#` starts a comment line.
 */
export function parseConfigFile(text: string, file: string): { group: string; options: RuleOptions }[] {
  const out: { group: string; options: RuleOptions }[] = [];
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const g = /^\[([^\]]+)\]$/.exec(line);
    if (g) {
      out.push({ group: g[1]!, options: new Map() });
      continue;
    }
    const kv = /^([\w-]+)\s*=\s*"([^"]*)"$/.exec(line);
    if (!kv || out.length === 0) {
      throw new Qcow2Error('INVALID_OPTION', `${file}:${lineNo}: parse error`, { file, line: lineNo });
    }
    out[out.length - 1]!.options.set(kv[1]!, kv[2]!);
  }
  return out;
}

export function readConfigFile(file: string): { group: string; options: RuleOptions }[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new IoError('ENOENT', `Could not read blkdebug config file: ${strerror(-(err.errno ?? -2))}`, {
      path: file,
    });
  }
  return parseConfigFile(text, file);
}

/** `blkdebug:[CONFIG]:FILE` (blkdebug_parse_filename). */
export function parseBlkdebugName(name: string): { config: string; image: string } {
  const rest = name.slice('blkdebug:'.length);
  const colon = rest.indexOf(':');
  if (colon < 0) {
    throw new Qcow2Error('INVALID_OPTION', 'Could not parse the blkdebug filename', { name });
  }
  return { config: rest.slice(0, colon), image: rest.slice(colon + 1) };
}

export class BlkdebugDevice implements BlockDevice {
  private readonly rules: Rule[];
  private active: InjectRule[] = [];
  private state = 1;
  /** `break`/`resume`/`remove_break` (qemu-io): requests suspended at events. */
  readonly breakpoints = new Breakpoints(this);

  constructor(
    readonly inner: BlockDevice,
    rules: Rule[],
    /** The name QEMU gives the node (`blkdebug:CONFIG:FILE`, or the image's). */
    readonly name: string = inner.name,
  ) {
    this.rules = [...rules];
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  /** blkdebug_debug_event: the rules of this event (in the current state) take their actions. */
  event(ev: string): void {
    if (this.breakpoints.holding) {
      // The request is suspended: its later events come when it goes on.
      this.breakpoints.hold({ kind: 'event', name: ev });
      return;
    }
    let injected = 0;
    let newState = this.state;
    for (const r of this.rules) {
      if (r.event !== ev || (r.state !== 0 && r.state !== this.state)) continue;
      if (r.action === 'inject-error') {
        // The first inject rule of an event replaces the active list; later ones join it.
        if (injected++ === 0) this.active = [];
        this.active.unshift(r);
      } else newState = r.newState;
    }
    this.state = newState;
    this.breakpoints.event(ev);
  }

  /** blkdebug_debug_breakpoint: false for an unknown event name (ENOENT). */
  breakpoint(ev: string, tag: string): boolean {
    if (!BLKDEBUG_EVENTS.some((e) => e === ev)) return false;
    this.breakpoints.add(ev, tag);
    return true;
  }

  /** rule_check: the error an active rule injects into this request, if any. */
  private check(type: IoType, offset: number, bytes: number, op: string): void {
    const r = this.active.find(
      (x) =>
        (x.offset === -1 || (bytes > 0 && x.offset >= offset && x.offset < offset + bytes)) &&
        x.ioTypes.has(type),
    );
    if (!r || r.errno === 0) return;
    if (r.once) {
      this.active = this.active.filter((x) => x !== r);
      this.rules.splice(this.rules.indexOf(r), 1);
    }
    throw new IoError(
      `EIO_${op.toUpperCase() as Uppercase<string>}`,
      `${op} failed on '${this.name}' at offset ${offset}: ${strerror(r.errno)}`,
      { path: this.name, op, offset, errno: errnoName(r.errno), injected: true },
    );
  }

  read(buf: Uint8Array, offset: number): void {
    this.check('read', offset, buf.length, 'read');
    this.inner.read(buf, offset);
    if (this.breakpoints.any) this.breakpoints.overlay(buf, offset);
  }

  write(buf: Uint8Array, offset: number): void {
    if (this.breakpoints.holding) {
      this.breakpoints.hold({ kind: 'write', buf, offset });
      return;
    }
    this.check('write', offset, buf.length, 'write');
    this.inner.write(buf, offset);
  }

  size(): number {
    const n = this.inner.size();
    return this.breakpoints.any ? this.breakpoints.size(n) : n;
  }

  truncate(length: number): void {
    if (this.breakpoints.holding) {
      this.breakpoints.hold({ kind: 'truncate', length });
      return;
    }
    this.inner.truncate(length);
  }

  flush(): void {
    if (this.breakpoints.holding) {
      this.breakpoints.hold({ kind: 'flush' });
      return;
    }
    this.check('flush', 0, 0, 'flush');
    this.inner.flush();
  }

  close(): void {
    this.breakpoints.releaseAll();
    this.inner.close();
  }

  extent(offset: number, length: number): FileExtent | undefined {
    return this.inner.extent?.(offset, length);
  }

  allocatedBytes(): number | undefined {
    return this.inner.allocatedBytes?.();
  }
}
