/**
 * Steps: the concrete operations a run performed, spelled as qemu-io commands (`write -P 0x5a 4096
 * 512`, `read -P 0 0 65536`, `discard …`, `truncate …`, `flush`, `close` = close and reopen) or
 * qemu-img subcommands (`snapshot -c s1`, `check`), plus a qemu turn spelled as the qemu-io
 * invocation it is (`qemu-io -c 'write -P 0x11 0 512' -c '…'`). A leading `! ` marks a step the
 * model expects the implementation to refuse. Cases store steps as these strings; `parseStep`
 * reads them back for replay. Stamped writes (`write -s w17.bin …`) carry data unique to (write
 * number, sector): model/stamp.ts.
 */
import { stampBytes, stampFileName } from './model/stamp.ts';
import type { BackingFormat, BackingWrite } from './layout.ts';

/** A write's data: one repeated byte (`-P`), or stamped sectors of write number `stamp` (`-s wN.bin`). */
export type WriteSource = { pattern: number; stamp?: undefined } | { stamp: number; pattern?: undefined };

export type WriteStep = { kind: 'write' | 'write-compressed'; offset: number; length: number } & WriteSource;

export type DataStep =
  | WriteStep
  | { kind: 'write-zeroes'; offset: number; length: number; unmap: boolean }
  | { kind: 'discard'; offset: number; length: number }
  /** Without a pattern: the exact bytes the model holds; with one (older cases): that byte throughout. */
  | { kind: 'read'; offset: number; length: number; pattern?: number };

/** A `qemu-img bitmap` operation on the closed image (the image operand goes before NAME). */
export type BitmapStep =
  | { kind: 'bitmap'; op: 'add'; name: string; granularity: number; disabled: boolean }
  | { kind: 'bitmap'; op: 'remove' | 'clear' | 'enable' | 'disable'; name: string }
  | { kind: 'bitmap'; op: 'merge'; source: string; name: string };

export type Step =
  | DataStep
  | BitmapStep
  | { kind: 'flush' }
  | { kind: 'reopen' }
  | { kind: 'snapshot-create'; name: string }
  | { kind: 'snapshot-apply'; name: string }
  | { kind: 'snapshot-delete'; name: string }
  | { kind: 'resize'; size: number }
  | { kind: 'qemu-turn'; ops: DataStep[] }
  | { kind: 'check' }
  /** `qemu-img check -r leaks|all` on the closed image. */
  | { kind: 'check-repair'; mode: 'leaks' | 'all' }
  /** `qemu-img convert -O qcow2 [-c]` into the same layout; the sequence continues on the result. */
  | { kind: 'convert'; compressed: boolean }
  | BackingStep
  | AioBatchStep
  | VmStateStep
  /** `qemu-img amend -o OPTION` on the closed image (compat, refcount_bits, lazy_refcounts). */
  | { kind: 'amend'; option: string };

/** One request of an `aio_write` batch (qemu-io's aio_write takes `-P`, not `-s`). */
export interface AioWrite {
  offset: number;
  length: number;
  pattern: number;
}

/**
 * `aio_write -P p off len` requests all in flight, then `aio_flush`; spelled as one line with the
 * requests separated by `; `. `landed`: the serial order (request indices) the harness found on
 * the image when overlapping requests made the outcome one of several (information, not input).
 */
export interface AioBatchStep {
  kind: 'aio-batch';
  writes: AioWrite[];
  landed?: number[];
  /**
   * `break EVENT`: the first request to reach this blkdebug event (qcow2's named write points)
   * is held there until every request of the batch is submitted, so that the others run while it
   * is in the middle of its allocation (implementations without blkdebug ignore it).
   */
  hold?: AioHold;
}

/** The blkdebug events a batch may hold its first request at (qcow2's BLKDBG_* write points). */
export type AioHold =
  'write_aio' | 'cluster_alloc' | 'l2_alloc_write' | 'l2_update' | 'cow_write' | 'refblock_alloc';

export const AIO_HOLDS: readonly AioHold[] = [
  'write_aio',
  'cluster_alloc',
  'l2_alloc_write',
  'l2_update',
  'cow_write',
  'refblock_alloc',
];

/**
 * Steps on backing files (the image closed around them):
 * - `base-create NAME FMT SIZE [0xPP@OFF+LEN …]`: a new file for a later rebase, made by
 *   `qemu-img create` and `qemu-io write -P` in the image's directory;
 * - `base-copy NAME FMT`: `qemu-img convert -O FMT` of the current backing file (same content);
 * - `rebase [-u] -b NAME -F FMT` / `rebase -b ''`: `qemu-img rebase` (safe, or `-u` unsafe);
 * - `commit`: `qemu-img commit` of the image into its backing file (the image is emptied).
 */
export type BackingStep =
  | { kind: 'base-create'; name: string; format: BackingFormat; size: number; writes: BackingWrite[] }
  | { kind: 'base-copy'; name: string; format: BackingFormat }
  | { kind: 'rebase'; unsafe: boolean; name: string | null; format?: BackingFormat }
  | { kind: 'commit' };

/** The VM-state area (qemu-io `write -b` / `read -b`; offsets count from the area's start). */
export type VmStateStep =
  | ({ kind: 'vmstate-write'; offset: number; length: number } & WriteSource)
  | { kind: 'vmstate-read'; offset: number; length: number };

export type StepKind = Step['kind'];

function formatAioBatch(step: AioBatchStep): string {
  const writes = step.writes.map((w) => `aio_write -P ${hex(w.pattern)} ${w.offset} ${w.length}`);
  const landed =
    step.landed && step.landed.some((r, i) => r !== i) ? `  # landed: ${step.landed.join(' ')}` : '';
  const hold = step.hold ? [`break ${step.hold}`] : [];
  return `${[...hold, ...writes, 'aio_flush'].join('; ')}${landed}`;
}

function formatBackingStep(step: BackingStep): string {
  switch (step.kind) {
    case 'base-create': {
      const writes = step.writes.map((w) => ` ${hex(w.pattern)}@${w.offset}+${w.length}`).join('');
      return `base-create ${step.name} ${step.format} ${step.size}${writes}`;
    }
    case 'base-copy':
      return `base-copy ${step.name} ${step.format}`;
    case 'rebase':
      return step.name === null
        ? `rebase${step.unsafe ? ' -u' : ''} -b ''`
        : `rebase${step.unsafe ? ' -u' : ''} -b ${step.name} -F ${step.format ?? 'qcow2'}`;
    case 'commit':
      return 'commit';
  }
}

function backingFormatWord(text: string | undefined, line: string): BackingFormat {
  if (text !== 'raw' && text !== 'qcow2') throw new StepSyntaxError(`bad backing format in '${line}'`);
  return text;
}

function parseBackingStep(line: string): BackingStep {
  const words = line.split(/\s+/);
  switch (words[0]) {
    case 'base-create': {
      const writes = words.slice(4).map((w): BackingWrite => {
        const m = /^(0x[0-9a-f]+)@(\d+)\+(\d+)$/i.exec(w);
        if (!m) throw new StepSyntaxError(`bad base write '${w}' in '${line}'`);
        return { pattern: Number(m[1]), offset: Number(m[2]), length: Number(m[3]) };
      });
      return {
        kind: 'base-create',
        name: name(words[1], line),
        format: backingFormatWord(words[2], line),
        size: num(words[3], line),
        writes,
      };
    }
    case 'base-copy':
      return { kind: 'base-copy', name: name(words[1], line), format: backingFormatWord(words[2], line) };
    case 'rebase': {
      const unsafe = words.includes('-u');
      const b = words.indexOf('-b');
      const target = b >= 0 ? words[b + 1] : undefined;
      if (target === "''" || target === '""') return { kind: 'rebase', unsafe, name: null };
      const f = words.indexOf('-F');
      return {
        kind: 'rebase',
        unsafe,
        name: name(target, line),
        format: backingFormatWord(f >= 0 ? words[f + 1] : undefined, line),
      };
    }
    default:
      return { kind: 'commit' };
  }
}

function parseAioBatch(line: string): AioBatchStep {
  const writes: AioWrite[] = [];
  let hold: AioHold | undefined;
  // (a `# landed: …` note says which order the run found; a replay finds it again)
  for (const part of line
    .replace(/#.*$/, '')
    .split(';')
    .map((p) => p.trim())) {
    if (part === 'aio_flush' || part === '') continue;
    const words = part.split(/\s+/);
    if (words[0] === 'break' && writes.length === 0 && AIO_HOLDS.includes(words[1] as AioHold)) {
      hold = words[1] as AioHold;
      continue;
    }
    if (words[0] !== 'aio_write' || words[1] !== '-P') throw new StepSyntaxError(`bad aio step '${line}'`);
    writes.push({ pattern: num(words[2], line), offset: num(words[3], line), length: num(words[4], line) });
  }
  return hold ? { kind: 'aio-batch', writes, hold } : { kind: 'aio-batch', writes };
}

/** The bytes a write step puts on the disk. */
export function writeData(step: { offset: number; length: number } & WriteSource): Uint8Array {
  if (step.stamp !== undefined) return stampBytes(step.stamp, step.offset, step.length);
  return new Uint8Array(step.length).fill(step.pattern);
}

function source(step: WriteSource): string {
  return step.stamp !== undefined ? `-s ${stampFileName(step.stamp)}` : `-P ${hex(step.pattern)}`;
}

function hex(pattern: number): string {
  return `0x${pattern.toString(16).padStart(2, '0')}`;
}

/** The qemu-io / qemu-img spelling of a step (without the refusal marker). */
export function formatStep(step: Step): string {
  switch (step.kind) {
    case 'write':
      return `write ${source(step)} ${step.offset} ${step.length}`;
    case 'write-zeroes':
      return `write -z${step.unmap ? ' -u' : ''} ${step.offset} ${step.length}`;
    case 'write-compressed':
      return `write -c ${source(step)} ${step.offset} ${step.length}`;
    case 'discard':
      return `discard ${step.offset} ${step.length}`;
    case 'read':
      return step.pattern === undefined
        ? `read ${step.offset} ${step.length}`
        : `read -P ${hex(step.pattern)} ${step.offset} ${step.length}`;
    case 'flush':
      return 'flush';
    case 'reopen':
      return 'close';
    case 'snapshot-create':
      return `snapshot -c ${step.name}`;
    case 'snapshot-apply':
      return `snapshot -a ${step.name}`;
    case 'snapshot-delete':
      return `snapshot -d ${step.name}`;
    case 'resize':
      return `truncate ${step.size}`;
    case 'qemu-turn':
      return `qemu-io ${step.ops.map((op) => `-c '${formatStep(op)}'`).join(' ')}`;
    case 'check':
      return 'check';
    case 'check-repair':
      return `check -r ${step.mode}`;
    case 'convert':
      return step.compressed ? 'convert -c' : 'convert';
    case 'bitmap':
      return `bitmap ${bitmapOptions(step)} ${step.name}`;
    case 'aio-batch':
      return formatAioBatch(step);
    case 'base-create':
    case 'base-copy':
    case 'rebase':
    case 'commit':
      return formatBackingStep(step);
    case 'vmstate-write':
      return `write -b ${source(step)} ${step.offset} ${step.length}`;
    case 'vmstate-read':
      return `read -b ${step.offset} ${step.length}`;
    case 'amend':
      return `amend -o ${step.option}`;
  }
}

/** `qemu-img bitmap`'s options for a bitmap step (what goes before the image operand). */
export function bitmapOptions(step: BitmapStep): string {
  switch (step.op) {
    case 'add':
      return `--add -g ${step.granularity}${step.disabled ? ' --disable' : ''}`;
    case 'merge':
      return `--merge ${step.source}`;
    default:
      return `--${step.op}`;
  }
}

function parseBitmapStep(line: string): BitmapStep {
  const words = line.split(/\s+/).slice(1);
  const bitmapName = words[words.length - 1];
  const n = name(bitmapName, line);
  const op = words[0];
  switch (op) {
    case '--add': {
      const g = words.indexOf('-g');
      return {
        kind: 'bitmap',
        op: 'add',
        name: n,
        granularity: num(g >= 0 ? words[g + 1] : undefined, line),
        disabled: words.includes('--disable'),
      };
    }
    case '--merge':
      return { kind: 'bitmap', op: 'merge', source: name(words[1], line), name: n };
    case '--remove':
    case '--clear':
    case '--enable':
    case '--disable':
      return { kind: 'bitmap', op: op.slice(2) as 'remove' | 'clear' | 'enable' | 'disable', name: n };
    default:
      throw new StepSyntaxError(`bad bitmap step '${line}'`);
  }
}

export function formatStepLine(step: Step, refused: boolean): string {
  return `${refused ? '! ' : ''}${formatStep(step)}`;
}

export class StepSyntaxError extends Error {}

function num(text: string | undefined, line: string): number {
  if (text === undefined || !/^(0x[0-9a-f]+|\d+)$/i.test(text))
    throw new StepSyntaxError(`bad number in '${line}'`);
  return Number(text);
}

function name(text: string | undefined, line: string): string {
  if (text === undefined || !/^[A-Za-z0-9_.-]+$/.test(text))
    throw new StepSyntaxError(`bad snapshot name in '${line}'`);
  return text;
}

function parseDataStep(line: string): DataStep {
  const words = line.trim().split(/\s+/);
  const flags = new Set<string>();
  let pattern: number | undefined;
  let stamp: number | undefined;
  const rest: string[] = [];
  for (let i = 1; i < words.length; i++) {
    const w = words[i];
    if (w === '-P') pattern = num(words[++i], line);
    else if (w === '-s') {
      const m = /^w(\d+)\.bin$/.exec(words[++i] ?? '');
      if (!m) throw new StepSyntaxError(`bad stamp file in '${line}'`);
      stamp = Number(m[1]);
    } else if (w.startsWith('-')) flags.add(w);
    else rest.push(w);
  }
  const offset = num(rest[0], line);
  const length = num(rest[1], line);
  if (words[0] === 'write') {
    if (flags.has('-z')) return { kind: 'write-zeroes', offset, length, unmap: flags.has('-u') };
    const kind = flags.has('-c') ? 'write-compressed' : 'write';
    if (stamp !== undefined) return { kind, offset, length, stamp };
    if (pattern === undefined) throw new StepSyntaxError(`write without -P or -s: '${line}'`);
    return { kind, offset, length, pattern };
  }
  if (words[0] === 'read') {
    return pattern === undefined
      ? { kind: 'read', offset, length }
      : { kind: 'read', offset, length, pattern };
  }
  if (words[0] === 'discard') return { kind: 'discard', offset, length };
  throw new StepSyntaxError(`unknown data step '${line}'`);
}

/** Parse a step line (the `! ` refusal marker is accepted and ignored: the model decides). */
export function parseStep(lineWithMarker: string): Step {
  const line = lineWithMarker.replace(/^!\s+/, '').trim();
  const words = line.split(/\s+/);
  if ((words[0] === 'write' || words[0] === 'read') && words.includes('-b')) {
    const d = parseDataStep(line.replace(/\s-b(?=\s)/, ''));
    if (d.kind === 'read') return { kind: 'vmstate-read', offset: d.offset, length: d.length };
    if (d.kind !== 'write') throw new StepSyntaxError(`bad VM-state step '${line}'`);
    return d.stamp !== undefined
      ? { kind: 'vmstate-write', offset: d.offset, length: d.length, stamp: d.stamp }
      : { kind: 'vmstate-write', offset: d.offset, length: d.length, pattern: d.pattern };
  }
  if (words[0] === 'amend') {
    if (words[1] !== '-o' || !/^[a-z_]+=[a-z0-9.]+$/.test(words[2] ?? ''))
      throw new StepSyntaxError(`bad amend step '${line}'`);
    return { kind: 'amend', option: words[2]! };
  }
  switch (words[0]) {
    case 'write':
    case 'read':
    case 'discard':
      return parseDataStep(line);
    case 'flush':
      return { kind: 'flush' };
    case 'close':
      return { kind: 'reopen' };
    case 'check':
      if (words[1] === '-r') {
        if (words[2] !== 'leaks' && words[2] !== 'all')
          throw new StepSyntaxError(`bad repair mode in '${line}'`);
        return { kind: 'check-repair', mode: words[2] };
      }
      return { kind: 'check' };
    case 'convert':
      return { kind: 'convert', compressed: words[1] === '-c' };
    case 'truncate':
      return { kind: 'resize', size: num(words[1], line) };
    case 'snapshot': {
      const n = name(words[2], line);
      if (words[1] === '-c') return { kind: 'snapshot-create', name: n };
      if (words[1] === '-a') return { kind: 'snapshot-apply', name: n };
      if (words[1] === '-d') return { kind: 'snapshot-delete', name: n };
      throw new StepSyntaxError(`bad snapshot step '${line}'`);
    }
    case 'bitmap':
      return parseBitmapStep(line);
    case 'aio_write':
    case 'break':
      return parseAioBatch(line);
    case 'base-create':
    case 'base-copy':
    case 'rebase':
    case 'commit':
      return parseBackingStep(line);
    case 'qemu-io': {
      const ops = [...line.matchAll(/-c '([^']*)'/g)].map((m) => parseDataStep(m[1]));
      return { kind: 'qemu-turn', ops };
    }
    default:
      throw new StepSyntaxError(`unknown step '${line}'`);
  }
}
