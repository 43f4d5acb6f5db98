/**
 * `qcow2 amend [--object obj] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options
 * filename` as qemu-img amend (img_amend): the options qcow2 can change in place, QEMU's option
 * help and its words for options that only image creation takes. The work is the engine's
 * (src/engine/amend.ts, through Qcow2Image.amend).
 */
import type { AmendOptions } from '../engine/amend.ts';
import { Qcow2Error } from '../errors.ts';
import {
  all,
  getopt,
  has,
  last,
  mergeOptStrings,
  parseBool,
  parseFormat,
  parseImageSize,
  UsageError,
} from './args.ts';
import { closeQuietly, isQcow2, openTarget, targetOf, type Io } from './common.ts';
import { asQemu, program } from './program.ts';
import { QCOW2_CREATE_KEYS } from './qcow2-options.ts';

/** qcow2_amend_opts, in the order `-o help` lists them. */
const AMEND_HELP = `Amend options for 'qcow2':
  backing_file=<str>     - File name of a base image
  backing_fmt=<str>      - Image format of the base image
  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])
  data_file=<str>        - File name of an external data file
  data_file_raw=<bool (on/off)> - The external data file must stay valid as a raw image
  encrypt.iter-time=<num> - Time to spend in PBKDF in milliseconds
  encrypt.keyslot=<num>  - Select a single keyslot to modify explicitly
  encrypt.new-secret=<str> - New secret to set in the matching keyslots. Empty string to erase
  encrypt.old-secret=<str> - Select all keyslots that match this password
  encrypt.state=<str>    - Select new state of affected keyslots (active/inactive)
  lazy_refcounts=<bool (on/off)> - Postpone refcount updates
  refcount_bits=<num>    - Width of a reference count entry in bits
  size=<size>            - Virtual disk size
`;

const AMEND_KEYS = new Set([
  'backing_file',
  'backing_fmt',
  'compat',
  'data_file',
  'data_file_raw',
  'encrypt.iter-time',
  'encrypt.keyslot',
  'encrypt.new-secret',
  'encrypt.old-secret',
  'encrypt.state',
  'lazy_refcounts',
  'refcount_bits',
  'size',
]);

/** Keys only `create` takes (qcow2_create_opts beyond the amend ones). */
const CREATE_ONLY = new Set(QCOW2_CREATE_KEYS.filter((k) => !AMEND_KEYS.has(k)));

function isHelp(opts: string[]): boolean {
  return opts.some((s) => s.split(',').some((kv) => kv === 'help' || kv === '?'));
}

export async function cmdAmend(argv: string[], io: Io): Promise<number> {
  try {
    return amend(argv, io);
  } catch (e) {
    // A hint goes on its own line, after the error (QEMU's error_append_hint).
    if (!(e instanceof Qcow2Error) || !e.message.includes('\n')) throw e;
    const [first, ...rest] = e.message.split('\n');
    io.err(`${program()}: ${first!}${asQemu() ? '' : ` [${e.code}]`}\n${rest.map((l) => `${l}\n`).join('')}`);
    return 1;
  }
}

function amend(argv: string[], io: Io): number {
  const p = getopt(argv, ':ho:f:t:pq', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'force', arg: 'none' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const optStrings = all(p, 'o');
  if (optStrings.length === 0) throw new UsageError('Must specify options (-o)');
  const fmt = last(p, 'f');
  const progress = has(p, 'p') && !has(p, 'q');
  if (fmt !== undefined && isHelp(optStrings)) {
    if (parseFormat(fmt) !== 'qcow2')
      throw new Qcow2Error('INVALID_OPTION', `Format driver '${fmt}' does not support option amendment`);
    io.out(AMEND_HELP);
    return 0;
  }
  if (p.operands.length !== 1) throw new UsageError('Expecting one image file name', false);
  const t = targetOf(p, p.operands[0]!);
  const d = openTarget(t, false);
  try {
    if (!isQcow2(d))
      throw new Qcow2Error('INVALID_OPTION', `Format driver '${d.format}' does not support option amendment`);
    if (isHelp(optStrings)) {
      io.out(AMEND_HELP);
      return 0;
    }
    const o = mergeOptStrings(optStrings);
    for (const k of o.keys()) {
      if (!AMEND_KEYS.has(k)) {
        const hint = CREATE_ONLY.has(k) ? '\nThis option is only supported for image creation' : '';
        throw new Qcow2Error('INVALID_OPTION', `Invalid parameter '${k}'${hint}`);
      }
    }
    // qemu_progress_print: a line when the value moved by at least 1%, and always at 0 and 100.
    let last = 0;
    const show = (pct: number, end = ''): void => {
      if (!progress) return;
      if (pct > last + 1 || pct < last - 1 || pct === 100 || pct === 0) {
        last = pct;
        io.out(`    (${printfPercent(pct)}/100%)\r${end}`);
      }
    };
    show(0);
    d.amend({ ...amendOptions(o), progress: (f) => show(Math.min(100, f * 100)) });
    d.flush();
    show(100, '\n'); // (one write: the line's end with its last report)
    return 0;
  } finally {
    closeQuietly(d);
  }
}

function amendOptions(o: Map<string, string>): AmendOptions {
  const a: AmendOptions = {};
  if (o.has('compat')) a.compat = o.get('compat');
  if (o.has('size')) a.size = parseImageSize(o.get('size')!);
  if (o.has('backing_file')) a.backingFile = o.get('backing_file');
  if (o.has('backing_fmt')) a.backingFormat = o.get('backing_fmt');
  if (o.has('lazy_refcounts')) a.lazyRefcounts = parseBool('lazy_refcounts', o.get('lazy_refcounts')!);
  if (o.has('refcount_bits')) {
    const v = o.get('refcount_bits')!;
    if (!/^[0-9]+$/.test(v))
      throw new Qcow2Error('INVALID_OPTION', `Parameter 'refcount_bits' expects a number`);
    a.refcountBits = Number(v);
  }
  if (o.has('data_file')) a.dataFile = o.get('data_file');
  if (o.has('data_file_raw')) a.dataFileRaw = parseBool('data_file_raw', o.get('data_file_raw')!);
  if ([...o.keys()].some((k) => k.startsWith('encrypt.'))) a.encrypt = true;
  return a;
}

/**
 * printf("%3.2f") of QEMU's progress value, a C float: glibc rounds an exact tie to even (3.125
 * prints as 3.12), where toFixed rounds it up.
 */
function printfPercent(pct: number): string {
  const x = Math.fround(pct);
  const t = x * 100;
  const f = Math.floor(t);
  if (t - f === 0.5) return ((f % 2 === 0 ? f : f + 1) / 100).toFixed(2);
  return x.toFixed(2);
}
