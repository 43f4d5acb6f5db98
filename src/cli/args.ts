/**
 * Option parsing shared by the verbs: GNU getopt_long semantics (options may follow operands,
 * `--` ends options, `-abc` clusters, `-fqcow2` attached arguments, unique long-option prefixes),
 * qemu's size syntax (qemu_strtosz), `-o k=v,k=v` with `,,` escaping, `--object secret,...` and
 * `--image-opts` strings.
 */
import * as fs from 'node:fs';
import { program } from './program.ts';

/** A command-line mistake: printed as qemu-img prints usage errors, exit code 1. */
export class UsageError extends Error {
  /** Add qemu-img's "Try '... --help'" line. */
  readonly hint: boolean;
  constructor(message: string, hint = true) {
    super(message);
    this.name = 'UsageError';
    this.hint = hint;
  }
}

export interface LongOpt {
  name: string;
  /** 'none' | 'required' | 'optional' (optional only with `=`). */
  arg: 'none' | 'required' | 'optional';
  /** Key reported for the option (defaults to the long name). */
  key?: string;
}

export interface ParsedOpt {
  key: string;
  value: string | undefined;
}

export interface Parsed {
  opts: ParsedOpt[];
  operands: string[];
}

/**
 * getopt_long with permutation. `shortSpec` is a getopt string ("f:hqo:"). Errors use qemu-img's
 * wording: "unrecognized option '-x'", "missing argument for option '-f'".
 */
export function getopt(argv: readonly string[], shortSpec: string, longs: readonly LongOpt[] = []): Parsed {
  const shorts = new Map<string, boolean>();
  for (let i = 0; i < shortSpec.length; i++) {
    const c = shortSpec[i]!;
    if (c === ':' || c === '+') continue;
    shorts.set(c, shortSpec[i + 1] === ':');
  }
  const opts: ParsedOpt[] = [];
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const exact = longs.find((l) => l.name === name);
      const prefixed = longs.filter((l) => l.name.startsWith(name));
      const lo = exact ?? (prefixed.length === 1 ? prefixed[0] : undefined);
      if (!lo || name === '') throw new UsageError(`unrecognized option '${a}'`);
      const key = lo.key ?? lo.name;
      if (lo.arg === 'none') {
        if (eq >= 0) throw new UsageError(`unrecognized option '${a}'`);
        opts.push({ key, value: undefined });
      } else if (eq >= 0) {
        opts.push({ key, value: a.slice(eq + 1) });
      } else if (lo.arg === 'optional') {
        opts.push({ key, value: undefined });
      } else {
        if (i + 1 >= argv.length) throw new UsageError(`missing argument for option '${a}'`);
        opts.push({ key, value: argv[++i]! });
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const takesArg = shorts.get(c);
        if (takesArg === undefined) throw new UsageError(`unrecognized option '${a}'`);
        if (!takesArg) {
          opts.push({ key: c, value: undefined });
          continue;
        }
        if (j + 1 < a.length) opts.push({ key: c, value: a.slice(j + 1) });
        else if (i + 1 < argv.length) opts.push({ key: c, value: argv[++i]! });
        else throw new UsageError(`missing argument for option '-${c}'`);
        break;
      }
      continue;
    }
    operands.push(a);
  }
  return { opts, operands };
}

// ---- sizes (qemu_strtosz) ----

const SUFFIX_SHIFT: Record<string, bigint> = { B: 0n, K: 10n, M: 20n, G: 30n, T: 40n, P: 50n, E: 60n };
export const INT64_MAX = (1n << 63n) - 1n;

export type SizeResult = { ok: true; value: bigint } | { ok: false; error: 'invalid' | 'range' };

/**
 * qemu_strtosz: decimal (or 0x hex) integer, an optional fraction, an optional suffix
 * b/k/M/G/T/P/E (any case, binary multiples); `defaultShift` applies with no suffix. A fraction
 * needs a multiplier above 1 unless it is zero; the result is truncated.
 */
export function parseSizeBig(text: string, defaultShift = 0n): SizeResult {
  const m = /^\s*\+?(0[xX][0-9a-fA-F]+|[0-9]+)(\.[0-9]*)?([bBkKmMgGtTpPeE])?$/.exec(text);
  if (!m) return { ok: false, error: 'invalid' };
  const [, intPart, fracPart, suffix] = m;
  const hex = /^0[xX]/.test(intPart!);
  if (hex && fracPart !== undefined) return { ok: false, error: 'invalid' };
  const shift = suffix ? SUFFIX_SHIFT[suffix.toUpperCase()]! : defaultShift;
  const whole = BigInt(intPart!);
  let value = whole << shift;
  if (fracPart !== undefined && fracPart.length > 1) {
    const digits = fracPart.slice(1);
    const num = BigInt(digits);
    if (num !== 0n && shift === 0n) return { ok: false, error: 'invalid' };
    value += (num << shift) / 10n ** BigInt(digits.length);
  }
  if (value > INT64_MAX) return { ok: false, error: 'range' };
  return { ok: true, value };
}

/** A size as a number, for the engine (exact up to 2^53). */
export function parseSize(text: string, defaultShift = 0n): number | 'invalid' | 'range' {
  const r = parseSizeBig(text, defaultShift);
  return r.ok ? Number(r.value) : r.error;
}

/** qemu-img's image-size parsing with its two error messages. */
export function parseImageSize(text: string): number {
  const r = parseSizeBig(text);
  if (r.ok) return Number(r.value);
  if (r.error === 'range') {
    throw new UsageError(`Invalid image size specified. Must be between 0 and ${INT64_MAX}.`, false);
  }
  throw new UsageError(
    'Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n' +
      `${program()}: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.`,
    false,
  );
}

// ---- -o k=v,k=v and other QemuOpts strings ----

/** Split a QemuOpts string at single commas; `,,` is a literal comma. */
export function splitOptString(s: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === ',') {
      if (s[i + 1] === ',') {
        cur += ',';
        i++;
      } else {
        parts.push(cur);
        cur = '';
      }
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

/**
 * Parse `k=v,k2=v2`; `implied` names the key of a leading bare value (as `driver` for
 * --object/--image-opts). A bare `k` means `k=on`.
 */
export function parseOptString(s: string, implied?: string): Map<string, string> {
  const out = new Map<string, string>();
  splitOptString(s).forEach((p, i) => {
    if (p === '') return;
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (i === 0 && implied) out.set(implied, p);
      else out.set(p, 'on');
    } else out.set(p.slice(0, eq), p.slice(eq + 1));
  });
  return out;
}

/** Merge several `-o` occurrences (later values win, as qemu-img appends them). */
export function mergeOptStrings(list: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of list) for (const [k, v] of parseOptString(s)) out.set(k, v);
  return out;
}

export function parseBool(key: string, v: string): boolean {
  if (v === 'on' || v === 'yes' || v === 'true') return true;
  if (v === 'off' || v === 'no' || v === 'false') return false;
  throw new UsageError(`Parameter '${key}' expects 'on' or 'off'`, false);
}

// ---- --object secret,id=...,data=...|file=... ----

export type Secrets = Map<string, Uint8Array>;

export function addSecretObject(secrets: Secrets, spec: string): void {
  const o = parseOptString(spec, 'qom-type');
  const type = o.get('qom-type');
  if (type !== 'secret') throw new UsageError(`Invalid object type '${type ?? ''}'`, false);
  const id = o.get('id');
  if (!id) throw new UsageError("Parameter 'id' is missing", false);
  const data = o.get('data');
  const file = o.get('file');
  if ((data === undefined) === (file === undefined)) {
    throw new UsageError("Either 'data' or 'file' must be provided", false);
  }
  let bytes: Uint8Array;
  if (data !== undefined) {
    bytes =
      o.get('format') === 'base64'
        ? new Uint8Array(Buffer.from(data, 'base64'))
        : new TextEncoder().encode(data);
  } else {
    try {
      bytes = new Uint8Array(fs.readFileSync(file!));
    } catch (e) {
      throw new UsageError(`Unable to read ${file!}: ${(e as Error).message}`, false);
    }
    if (o.get('format') === 'base64')
      bytes = new Uint8Array(Buffer.from(new TextDecoder().decode(bytes), 'base64'));
  }
  secrets.set(id, bytes);
}

export function lookupSecret(secrets: Secrets, id: string): Uint8Array {
  const s = secrets.get(id);
  if (!s) throw new UsageError(`No secret with id '${id}'`, false);
  return s;
}

/** `--image-opts driver=qcow2,file.filename=F,encrypt.key-secret=ID` → what the opener needs. */
export interface ImageOpts {
  filename: string;
  format: 'qcow2' | 'raw' | undefined;
  secretId: string | undefined;
}

export function parseImageOpts(spec: string): ImageOpts {
  const o = parseOptString(spec);
  const filename = o.get('file.filename') ?? o.get('filename');
  if (!filename) throw new UsageError("Parameter 'file.filename' is required", false);
  return {
    filename,
    format: parseFormat(o.get('driver')),
    secretId: o.get('encrypt.key-secret') ?? o.get('key-secret'),
  };
}

export function parseFormat(f: string | undefined): 'qcow2' | 'raw' | undefined {
  if (f === undefined) return undefined;
  if (f === 'qcow2' || f === 'raw') return f;
  throw new UsageError(`Unknown driver '${f}'`, false);
}

/** Last value of an option, or undefined. */
export function last(p: Parsed, key: string): string | undefined {
  let v: string | undefined;
  for (const o of p.opts) if (o.key === key) v = o.value ?? '';
  return v;
}

export function has(p: Parsed, key: string): boolean {
  return p.opts.some((o) => o.key === key);
}

export function all(p: Parsed, key: string): string[] {
  return p.opts.filter((o) => o.key === key).map((o) => o.value ?? '');
}

export function outputFormat(p: Parsed): 'human' | 'json' {
  const v = last(p, 'output');
  if (v === undefined || v === 'human') return 'human';
  if (v === 'json') return 'json';
  throw new UsageError('--output must be used with human or json as argument.', false);
}
