/**
 * `qcow2 map [--output=human|json] [-f fmt] [--start-offset=N] [--max-length=N] FILE` as
 * qemu-img map: block-status runs merged when depth/present/zero/data agree and host offsets
 * are contiguous; JSON one object per line inside "[...]".
 */
import type { BlockStatus, GuestDisk } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { getopt, last, outputFormat, parseSize, UsageError } from './args.ts';
import { closeQuietly, openTarget, targetOf, type Io } from './common.ts';
import { program } from './program.ts';
import { hexAlt } from './format.ts';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset: number | undefined;
  filename: string | undefined;
}

function entryOf(s: BlockStatus, start: number): MapEntry {
  const offset = s.compressed ? undefined : s.hostOffset;
  return {
    start,
    length: s.length,
    depth: s.depth,
    present: s.present,
    zero: s.zero,
    data: s.data,
    offset,
    filename: offset === undefined ? undefined : s.filename,
  };
}

function mergeable(a: MapEntry, b: MapEntry): boolean {
  if (a.length === 0) return false;
  if (a.zero !== b.zero || a.data !== b.data || a.depth !== b.depth || a.present !== b.present) return false;
  if (
    (a.filename === undefined) !== (b.filename === undefined) ||
    (a.offset === undefined) !== (b.offset === undefined)
  )
    return false;
  if (a.filename !== undefined && a.filename !== b.filename) return false;
  if (a.offset !== undefined && a.offset + a.length !== b.offset) return false;
  return true;
}

/** The merged extents of [start, end) — the same walk qemu-img map does. */
export function mapExtents(d: GuestDisk, start = 0, end = d.size): MapEntry[] {
  const out: MapEntry[] = [];
  let cur: MapEntry | undefined;
  let off = start;
  while (off < end) {
    const s = d.blockStatus(off, end - off);
    const len = Math.min(s.length, end - off);
    if (len <= 0) throw new Qcow2Error('BLOCK_STATUS', `block status made no progress at offset ${off}`);
    const next = { ...entryOf(s, off), length: len };
    if (cur && mergeable(cur, next)) cur.length += len;
    else {
      if (cur) out.push(cur);
      cur = next;
    }
    off += len;
  }
  if (cur) out.push(cur);
  return out;
}

export function jsonEntry(e: MapEntry): string {
  let s = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
  if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
  return `${s}}`;
}

export async function cmdMap(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':f:hU', [
    { name: 'output', arg: 'required' },
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'start-offset', arg: 'required', key: 's' },
    { name: 'max-length', arg: 'required', key: 'l' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const output = outputFormat(p);
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name');
  const num = (key: string, what: string): number | undefined => {
    const v = last(p, key);
    if (v === undefined) return undefined;
    const n = parseSize(v);
    if (typeof n !== 'number')
      throw new UsageError(`Invalid ${what} specified! You may use k, M, G, T, P or E suffixes for `, false);
    return n;
  };
  const start = num('s', 'start offset') ?? 0;
  const maxLen = num('l', 'max length');
  const d = openTarget(targetOf(p, p.operands[0]!), true);
  try {
    const end = maxLen === undefined ? d.size : Math.min(d.size, start + maxLen);
    const entries = mapExtents(d, start, end);
    if (output === 'json') {
      io.out(`[${entries.map(jsonEntry).join(',\n')}]\n`);
      return 0;
    }
    io.out(`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`);
    // Human output merges zero runs regardless of data/zero flags (qemu's dump_map_entry).
    let prev: MapEntry | undefined;
    for (const e of entries) {
      let cur = e;
      if (prev && (!cur.data || cur.zero)) cur = { ...cur, data: false, zero: true };
      if (cur.data && cur.offset === undefined) {
        io.err(`${program()}: File contains external, encrypted or compressed clusters.\n`);
        return 1;
      }
      if (cur.data && !cur.zero)
        io.out(
          `${hexAlt(cur.start, 16)}${hexAlt(cur.length, 16)}${hexAlt(cur.offset ?? 0, 16)}${cur.filename ?? ''}\n`,
        );
      prev = cur;
    }
    return 0;
  } finally {
    closeQuietly(d);
  }
}
