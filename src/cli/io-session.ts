/**
 * qemu-io's session for `qcow2 io`: the open image, the command dispatcher (qemu-io's argument
 * counting, POSIX getopt, read-only checks) and the helpers the commands share (numbers, patterns,
 * dumps, vectored requests, copy-on-read, the -s snapshot overlay). The commands themselves are in
 * io-commands.ts; io.ts parses the command line and runs the session.
 */
import * as fs from 'node:fs';
import type { GuestDisk, OpenOptions } from '../api.ts';
import * as os from 'node:os';
import * as path from 'node:path';
import { Qcow2Image } from '../image.ts';
import { openImage } from '../open.ts';
import { type CliLockOptions } from './lock-options.ts';
import { getopt, has, last, parseSizeBig, type Parsed } from './args.ts';
import { isQcow2, type Io } from './common.ts';
import { ioReport } from './format.ts';
import { nodeErrorText, strerrorOf } from '../io/errno.ts';
import { CorruptionError } from '../errors.ts';

export const REQUEST_MAX = 2147483136; // BDRV_REQUEST_MAX_BYTES

/** bdrv_parse_cache_mode's names. */
export const CACHE_MODES = ['none', 'off', 'writeback', 'writethrough', 'directsync', 'unsafe'];

/** Failure of one command: its output was already printed. */
export class CmdFailed extends Error {}

export interface Cmd {
  name: string;
  alias?: string;
  args: string;
  help: string;
  opts: string;
  min: number;
  max: number; // -1 = unlimited
  needsFile: boolean;
  run(s: Session, p: Parsed): void;
}

/** qemu-io's cvtnum with its printed errors. */
export function cvtnum(s: Session, arg: string): number {
  const r = parseSizeBig(arg);
  if (r.ok) return Number(r.value);
  s.io.out(
    r.error === 'range'
      ? `Parsing error: argument too large -- ${arg}\n`
      : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${arg}\n`,
  );
  throw new CmdFailed();
}

export function patternByte(s: Session, arg: string): number {
  const n = /^-?(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)$/i.test(arg)
    ? Number(arg.startsWith('0') && !/^0x/i.test(arg) && arg.length > 1 ? parseInt(arg, 8) : arg)
    : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 255) {
    s.io.out(`${arg} is not a valid pattern byte\n`);
    throw new CmdFailed();
  }
  return n;
}

/**
 * qemu-io's `write -s FILE` buffer: FILE's first `len` bytes, repeated from its start when FILE is
 * shorter; a file that cannot be read or is empty fails the command with qemu-io's stderr line.
 */
export function bufferFromFile(s: Session, file: string, len: number): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    s.io.err(`${file}: ${nodeErrorText(e)}\n`);
    throw new CmdFailed();
  }
  if (bytes.length === 0) {
    s.io.err(`${file}: file is empty\n`);
    throw new CmdFailed();
  }
  const buf = new Uint8Array(len);
  for (let at = 0; at < len; at += bytes.length)
    buf.set(bytes.subarray(0, Math.min(bytes.length, len - at)), at);
  return buf;
}

export function opFailed(s: Session, op: string, e: unknown): never {
  // qcow2_signal_corruption: the first corruption met on a writable image marks it corrupt, and
  // QEMU says so on stderr before the request fails.
  if (e instanceof CorruptionError && s.disk && !s.disk.readOnly && !s.corruptionReported) {
    s.corruptionReported = true;
    const what = e.message.replace(/ \(at host offset 0x[0-9a-f]+\)$/, '');
    s.io.err(`qcow2: Marking image as corrupt: ${what}; further corruption events will be suppressed\n`);
  }
  // The engine's message carries the detail; qemu-io prints strerror() of the failure's errno
  // (EIO for range errors and failures without one).
  s.io.out(`${op} failed: ${strerrorOf(e)}\n`);
  if (process.env.QCOW2_DEBUG === '1') s.io.err(`${e instanceof Error ? e.message : String(e)}\n`);
  throw new CmdFailed();
}

export function elapsed(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export function dumpBuffer(buf: Uint8Array, offset: number): string {
  let out = '';
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, Math.min(i + 16, buf.length));
    let hex = '';
    let chars = '';
    for (const b of row) {
      hex += `${b.toString(16).padStart(2, '0')} `;
      chars += /[A-Za-z0-9]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '.';
    }
    out += `${(offset + i).toString(16).padStart(8, '0')}:  ${hex} ${chars}\n`;
  }
  return out;
}

export function offLen(s: Session, p: Parsed): [number, number] {
  const off = cvtnum(s, p.operands[0]!);
  const len = cvtnum(s, p.operands[1]!);
  if (len > REQUEST_MAX) {
    s.io.out(`length cannot exceed ${REQUEST_MAX}, given ${p.operands[1]!}\n`);
    throw new CmdFailed();
  }
  return [off, len];
}

/** Write requests that writethrough mode follows with a flush (discard and truncate are not). */
const FLUSHED_WRITES = new Set(['write', 'writev', 'aio_write']);

/** Does a cache mode (bdrv_parse_cache_mode) write through? */
export function cacheModeWritesThrough(mode: string): boolean {
  return mode === 'writethrough' || mode === 'directsync';
}

/** qemu-io commands declared with BLK_PERM_WRITE / BLK_PERM_RESIZE. */
export const WRITERS = new Set(['write', 'writev', 'aio_write', 'discard', 'truncate']);

export function copyOnRead(s: Session, off: number, len: number): void {
  const d = s.disk!;
  if (!s.copyOnRead || len === 0 || !isQcow2(d)) return;
  const cs = d.clusterSize;
  const end = Math.min(Math.ceil((off + len) / cs) * cs, d.size);
  const CHUNK = 64 << 20;
  for (let pos = Math.floor(off / cs) * cs; pos < end;) {
    const st = d.blockStatus(pos, end - pos);
    const n = Math.min(Math.max(st.length, 1), end - pos);
    if (!(st.present && st.depth === 0)) {
      for (let o = pos; o < pos + n; o += CHUNK) {
        const m = Math.min(CHUNK, pos + n - o);
        const data = d.read(o, m);
        if (data.every((b) => b === 0)) d.writeZeroes(o, m);
        else d.write(o, data);
      }
    }
    pos += n;
  }
}

/** qemu-io's create_iovec: lengths of the vector, with its limits and messages. */
export function iovecLengths(s: Session, args: string[]): number {
  let count = 0;
  for (const arg of args) {
    const len = cvtnum(s, arg);
    if (len > REQUEST_MAX) {
      s.io.out(`Argument '${arg}' exceeds maximum size ${REQUEST_MAX}\n`);
      throw new CmdFailed();
    }
    if (count > REQUEST_MAX - len) {
      s.io.out(`The total number of bytes exceed the maximum size ${REQUEST_MAX}\n`);
      throw new CmdFailed();
    }
    count += len;
  }
  return count;
}

/** readv / aio_read: one read of the vector's total length. */
export function vectoredRead(s: Session, p: Parsed, c: Cmd, failName: string): void {
  if (p.operands.length < 2) usage(s, c);
  const P = last(p, 'P');
  const pat = P === undefined ? undefined : patternByte(s, P);
  const off = cvtnum(s, p.operands[0]!);
  const len = iovecLengths(s, p.operands.slice(1));
  s.submitted = true;
  const t0 = process.hrtime.bigint();
  let buf: Uint8Array;
  try {
    copyOnRead(s, off, len);
    buf = s.disk!.read(off, len);
  } catch (e) {
    opFailed(s, failName, e);
  }
  const sec = elapsed(t0);
  let failed = false;
  if (pat !== undefined && buf.some((b) => b !== pat)) {
    s.io.out(`Pattern verification failed at offset ${off}, ${len} bytes\n`);
    failed = true;
  }
  if (!has(p, 'q')) {
    if (has(p, 'v')) s.io.out(dumpBuffer(buf, off));
    s.io.out(ioReport('read', off, len, len, 1, sec));
  }
  if (failed) throw new CmdFailed();
}

/** writev / aio_write: one write of the vector's total length (aio_write also takes -z/-u). */
export function vectoredWrite(s: Session, p: Parsed, c: Cmd, failName: string): void {
  if (p.operands.length < 2) usage(s, c);
  const z = has(p, 'z');
  if (z && p.operands.length !== 2) {
    s.io.out('-z supports only a single length parameter\n');
    throw new CmdFailed();
  }
  if (has(p, 'u') && !z) {
    s.io.out('-u requires -z to be specified\n');
    throw new CmdFailed();
  }
  if (z && has(p, 'P')) {
    s.io.out('-z and -P cannot be specified at the same time\n');
    throw new CmdFailed();
  }
  const pat = has(p, 'P') ? patternByte(s, last(p, 'P')!) : 0xcd;
  const off = cvtnum(s, p.operands[0]!);
  const len = z ? cvtnum(s, p.operands[1]!) : iovecLengths(s, p.operands.slice(1));
  s.submitted = true;
  const t0 = process.hrtime.bigint();
  try {
    if (z) s.disk!.writeZeroes(off, len, { unmap: has(p, 'u') });
    else s.disk!.write(off, new Uint8Array(len).fill(pat));
  } catch (e) {
    opFailed(s, failName, e);
  }
  if (!has(p, 'q')) s.io.out(ioReport('wrote', off, len, len, 1, elapsed(t0)));
}

export function usage(s: Session, c: Cmd): never {
  s.io.out(`${c.name} ${c.args} -- ${c.help}\n`);
  throw new CmdFailed();
}

export function notAligned(s: Session, arg: string, what: string): never {
  s.io.out(`${arg} is not a sector-aligned value for '${what}'\n`);
  throw new CmdFailed();
}

/**
 * qemu-io -s (snapshot mode): the image opens read-only under a temporary qcow2 overlay that takes
 * every write and is deleted on close, so the image itself is never changed.
 */
export function openSnapshotOverlay(
  file: string,
  format: 'qcow2' | 'raw' | undefined,
  secret: Uint8Array | undefined,
): GuestDisk {
  const base = openImage(file, { format, readOnly: true, secret });
  const size = base.size;
  const fmt = base.format;
  base.close();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qemu-io-snapshot-'));
  const overlay = path.join(dir, 'overlay.qcow2');
  try {
    Qcow2Image.create(overlay, {
      size,
      backingFile: path.resolve(file),
      backingFormat: fmt,
      sync: false,
    }).close();
    const disk = openImage(overlay, { format: 'qcow2', secret });
    const close = disk.close.bind(disk);
    disk.close = (): void => {
      try {
        close();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    };
    return disk;
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

export class Session {
  disk: GuestDisk | undefined;
  quit = false;
  lock: CliLockOptions = {};
  /** Runtime cache options from --image-opts. */
  cache: OpenOptions['cache'];
  /** qemu-io's -d and --image-opts discard options (discard-opts.ts); unset: the engine's defaults. */
  discard: OpenOptions['discard'];
  /** The `--object secret` objects, which a node tree's `encrypt.key-secret` options name. */
  secrets: ReadonlyMap<string, Uint8Array> = new Map();
  /** Set once the current aio command's request was submitted (later failures do not fail it). */
  submitted = false;
  /** The corruption signal was printed (QEMU prints it once per image). */
  corruptionReported = false;
  /** -C: data read through from a backing file is written into the top image. */
  copyOnRead = false;
  /**
   * Writethrough (qemu-io's default, `-t writethrough|directsync`): every write request is
   * followed by a flush, as QEMU's block layer emulates FUA for qcow2 (blk_set_enable_write_cache).
   */
  writethrough = true;
  /** The block options given at open (`open -o`, a json: name): what a reopen may not change. */
  openOptions: ReadonlyMap<string, string> = new Map();
  constructor(
    /** Where output goes (io-breakpoints.ts holds a suspended aio request's output for a while). */
    public io: Io,
    readonly format: 'qcow2' | 'raw' | undefined,
    readonly secret: Uint8Array | undefined,
    /** The command table (io-commands.ts), given so that this module need not import it. */
    readonly commands: readonly Cmd[],
  ) {}

  open(
    file: string,
    format: 'qcow2' | 'raw' | undefined,
    readOnly: boolean,
    mode: {
      snapshot?: boolean;
      copyOnRead?: boolean;
      /** Opened from --image-opts: qemu-io's open errors then name no device. */
      imageOpts?: boolean;
      /** The name the user gave (null: none, as `open -o` without a file name). */
      displayName?: string | null;
    } = {},
  ): void {
    try {
      if (mode.copyOnRead && readOnly) {
        throw new Error("Can't use copy-on-read on read-only device");
      }
      this.disk = mode.snapshot
        ? openSnapshotOverlay(file, format, this.secret)
        : openImage(file, {
            format,
            readOnly,
            secret: this.secret,
            cache: this.cache,
            discard: this.discard,
            secrets: this.secrets,
            ...this.lock,
          });
      this.copyOnRead = mode.copyOnRead === true;
    } catch (e) {
      const shown = mode.displayName === undefined ? file : mode.displayName;
      const dev = mode.imageOpts || shown === null ? '' : ` device ${shown}`;
      this.io.err(`qemu-io: can't open${dev}: ${e instanceof Error ? e.message : String(e)}\n`);
      throw new CmdFailed();
    }
  }

  /** Run one command line; false when it failed. */
  command(line: string): boolean {
    const words = line
      .trim()
      .split(/\s+/)
      .filter((w) => w !== '');
    if (words.length === 0) return true;
    const name = words[0]!;
    const cmd = this.commands.find((c) => c.name === name || c.alias === name);
    if (!cmd) {
      this.io.err(`command "${name}" not found\n`);
      return false;
    }
    const n = words.length - 1;
    // qemu-io counts words (options included); commands taking options have no maximum.
    const max = cmd.opts === '' ? cmd.max : -1;
    if (n < cmd.min || (max >= 0 && n > max)) {
      const expected =
        max < 0 ? `at least ${cmd.min}` : max === cmd.min ? `${cmd.min}` : `between ${cmd.min} and ${max}`;
      this.io.err(`bad argument count ${n} to ${name}, expected ${expected} arguments\n`);
      return false;
    }
    if (cmd.needsFile && !this.disk) {
      this.io.err("no file open, try 'help open'\n");
      return false;
    }
    try {
      let p: Parsed;
      try {
        // qemu-io commands use POSIX getopt: options stop at the first operand.
        const firstOperand = words
          .slice(1)
          .findIndex((w, i, arr) => !w.startsWith('-') && !(i > 0 && optTakesArg(cmd.opts, arr[i - 1]!)));
        const head = firstOperand < 0 ? words.slice(1) : words.slice(1, 1 + firstOperand);
        const tail = firstOperand < 0 ? [] : words.slice(1 + firstOperand);
        p = getopt(head, cmd.opts);
        p.operands.push(...tail);
      } catch (e) {
        const m = /'-?-?(.)/.exec(e instanceof Error ? e.message : '');
        this.io.err(`${name}: invalid option -- '${m ? m[1]! : '?'}'\n`);
        usage(this, cmd);
      }
      if (p.operands.length < cmd.min || (cmd.max >= 0 && p.operands.length > cmd.max)) usage(this, cmd);
      this.submitted = false;
      // Commands that need write permission fail up front on a read-only node (qemuio_command).
      if (WRITERS.has(cmd.name) && this.disk?.readOnly) {
        this.io.err('qemu-io: Block node is read-only\n');
        return false;
      }
      cmd.run(this, p);
      if (this.writethrough && FLUSHED_WRITES.has(cmd.name)) this.disk?.flush();
      return true;
    } catch (e) {
      if (e instanceof CmdFailed) return false;
      this.io.err(`${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      return false;
    }
  }
}

export function optTakesArg(spec: string, word: string): boolean {
  if (!/^-[A-Za-z]+$/.test(word)) return false;
  const c = word[word.length - 1]!;
  const i = spec.indexOf(c);
  return i >= 0 && spec[i + 1] === ':';
}
