/**
 * `qcow2 io [-f fmt] [-r] [-c CMD]... [--object ...] [--image-opts] [FILE]`: qemu-io's command
 * language (read, write, discard, flush, map, info, length, truncate, open, close, quit) with its
 * output text. Commands come from -c, or from standard input (with qemu-io's "qemu-io> " prompt).
 * Exit status 1 when any command failed (qemu-io 7.2), 0 otherwise.
 */
import * as fs from 'node:fs';
import type { GuestDisk, OpenOptions } from '../api.ts';
import * as os from 'node:os';
import * as path from 'node:path';
import { Qcow2Image } from '../image.ts';
import * as C from '../format/constants.ts';
import { l1EntriesFor } from '../format/header.ts';
import { openImage } from '../open.ts';
import { lockOptionsOf, type CliLockOptions } from './lock-options.ts';
import {
  all,
  getopt,
  has,
  last,
  parseFormat,
  parseImageOpts,
  parseOptString,
  parseSizeBig,
  UsageError,
  type Parsed,
} from './args.ts';
import { closeQuietly, isQcow2, secretsOf, type Io } from './common.ts';
import { cacheOptionsOf } from './cache-opts.ts';
import { cvtstr, dumpQdict, ioReport } from './format.ts';
import { imageInfo } from './info.ts';
import type { JsonObject } from './format.ts';

const REQUEST_MAX = 2147483136; // BDRV_REQUEST_MAX_BYTES

/** bdrv_parse_cache_mode's names. */
const CACHE_MODES = ['none', 'off', 'writeback', 'writethrough', 'directsync', 'unsafe'];

/** Failure of one command: its output was already printed. */
class CmdFailed extends Error {}

interface Cmd {
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
function cvtnum(s: Session, arg: string): number {
  const r = parseSizeBig(arg);
  if (r.ok) return Number(r.value);
  s.io.out(
    r.error === 'range'
      ? `Parsing error: argument too large -- ${arg}\n`
      : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${arg}\n`,
  );
  throw new CmdFailed();
}

function patternByte(s: Session, arg: string): number {
  const n = /^-?(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)$/i.test(arg)
    ? Number(arg.startsWith('0') && !/^0x/i.test(arg) && arg.length > 1 ? parseInt(arg, 8) : arg)
    : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 255) {
    s.io.out(`${arg} is not a valid pattern byte\n`);
    throw new CmdFailed();
  }
  return n;
}

function opFailed(s: Session, op: string, e: unknown): never {
  // The engine's message carries the detail; qemu-io prints strerror(EIO) for range/IO errors.
  s.io.out(`${op} failed: Input/output error\n`);
  if (process.env.QCOW2_DEBUG === '1') s.io.err(`${e instanceof Error ? e.message : String(e)}\n`);
  throw new CmdFailed();
}

function elapsed(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function dumpBuffer(buf: Uint8Array, offset: number): string {
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

function offLen(s: Session, p: Parsed): [number, number] {
  const off = cvtnum(s, p.operands[0]!);
  const len = cvtnum(s, p.operands[1]!);
  if (len > REQUEST_MAX) {
    s.io.out(`length cannot exceed ${REQUEST_MAX}, given ${p.operands[1]!}\n`);
    throw new CmdFailed();
  }
  return [off, len];
}

/** qemu-io commands declared with BLK_PERM_WRITE / BLK_PERM_RESIZE. */
const WRITERS = new Set(['write', 'writev', 'aio_write', 'discard', 'truncate']);

const COMMANDS: Cmd[] = [
  {
    name: 'read',
    alias: 'r',
    args: '[-abCqv] [-P pattern [-s off] [-l len]] off len',
    help: 'reads a number of bytes at a specified offset',
    // -p is accepted and ignored, as qemu-io 7.2 does for backwards compatibility.
    opts: 'abCpqvP:s:l:',
    min: 2,
    max: 2,
    needsFile: true,
    run(s, p) {
      const P = last(p, 'P');
      const pat = P === undefined ? undefined : patternByte(s, P);
      if (pat === undefined && (has(p, 's') || has(p, 'l'))) return usage(s, this);
      const [off, len] = offLen(s, p);
      const pOff = has(p, 's') ? cvtnum(s, last(p, 's')!) : 0;
      const pLen = has(p, 'l') ? cvtnum(s, last(p, 'l')!) : len - pOff;
      if (pOff + pLen > len) {
        s.io.out('pattern verification range exceeds end of read data\n');
        throw new CmdFailed();
      }
      const t0 = process.hrtime.bigint();
      let buf: Uint8Array;
      try {
        copyOnRead(s, off, len);
        buf = s.disk!.read(off, len);
      } catch (e) {
        opFailed(s, 'read', e);
      }
      const sec = elapsed(t0);
      let failed = false;
      if (pat !== undefined) {
        for (let i = pOff; i < pOff + pLen; i++) {
          if (buf[i] !== pat) {
            s.io.out(`Pattern verification failed at offset ${off + pOff}, ${pLen} bytes\n`);
            failed = true;
            break;
          }
        }
      }
      if (has(p, 'v')) s.io.out(dumpBuffer(buf, off));
      if (!has(p, 'q')) s.io.out(ioReport('read', off, len, len, 1, sec));
      if (failed) throw new CmdFailed();
    },
  },
  {
    name: 'write',
    alias: 'w',
    args: '[-bcCfnquz] [-P pattern] off len',
    help: 'writes a number of bytes at a specified offset',
    opts: 'bcCfnpP:quzs:',
    min: 2,
    max: 2,
    needsFile: true,
    run(s, p) {
      const z = has(p, 'z');
      const c = has(p, 'c');
      if ([z, has(p, 'P'), has(p, 's')].filter(Boolean).length > 1) {
        s.io.out('Only one of -z, -P, and -s can be specified at the same time\n');
        throw new CmdFailed();
      }
      if (has(p, 'u') && !z) {
        s.io.out('-u requires -z to be specified\n');
        throw new CmdFailed();
      }
      const pat = has(p, 'P') ? patternByte(s, last(p, 'P')!) : 0xcd;
      const [off, len] = offLen(s, p);
      if (c) {
        if (off % 512) return notAligned(s, p.operands[0]!, 'offset');
        if (len % 512) return notAligned(s, p.operands[1]!, 'count');
      }
      const d = s.disk!;
      const t0 = process.hrtime.bigint();
      try {
        if (z) d.writeZeroes(off, len, { unmap: has(p, 'u') });
        else if (c) {
          if (!isQcow2(d)) throw new Error('compression unsupported');
          d.writeCompressed(off, new Uint8Array(len).fill(pat));
        } else d.write(off, new Uint8Array(len).fill(pat));
      } catch (e) {
        opFailed(s, 'write', e);
      }
      if (!has(p, 'q')) s.io.out(ioReport('wrote', off, len, len, 1, elapsed(t0)));
    },
  },
  {
    name: 'readv',
    args: '[-Cqv] [-P pattern] off len [len..]',
    help: 'reads a number of bytes at a specified offset',
    opts: 'CP:qv',
    min: 2,
    max: -1,
    needsFile: true,
    run(s, p) {
      vectoredRead(s, p, this, 'readv');
    },
  },
  {
    name: 'writev',
    args: '[-Cfq] [-P pattern] off len [len..]',
    help: 'writes a number of bytes at a specified offset',
    opts: 'CfqP:',
    min: 2,
    max: -1,
    needsFile: true,
    run(s, p) {
      vectoredWrite(s, p, this, 'writev');
    },
  },
  {
    name: 'aio_read',
    args: '[-Ciqv] [-P pattern] off len [len..]',
    help: 'asynchronously reads a number of bytes',
    opts: 'CP:iqv',
    min: 2,
    max: -1,
    needsFile: true,
    run(s, p) {
      if (has(p, 'i')) {
        s.io.out('injecting invalid read request\n');
        return;
      }
      // An aio request succeeds once submitted: its failure is printed, not returned.
      try {
        vectoredRead(s, p, this, 'readv');
      } catch (e) {
        if (!(e instanceof CmdFailed) || !s.submitted) throw e;
      }
    },
  },
  {
    name: 'aio_write',
    args: '[-Cfiquz] [-P pattern] off len [len..]',
    help: 'asynchronously writes a number of bytes',
    opts: 'CfiqP:uz',
    min: 2,
    max: -1,
    needsFile: true,
    run(s, p) {
      if (has(p, 'i')) {
        s.io.out('injecting invalid write request\n');
        return;
      }
      try {
        vectoredWrite(s, p, this, 'writev');
      } catch (e) {
        if (!(e instanceof CmdFailed) || !s.submitted) throw e;
      }
    },
  },
  {
    name: 'aio_flush',
    args: '',
    help: 'completes all outstanding aio requests',
    opts: '',
    min: 0,
    max: 0,
    needsFile: true,
    run() {
      // Requests complete as they are submitted (the engine is synchronous): nothing is pending.
    },
  },
  {
    name: 'alloc',
    alias: 'a',
    args: 'offset [count]',
    help: 'checks if offset is allocated in the file',
    opts: '',
    min: 1,
    max: 2,
    needsFile: true,
    run(s, p) {
      const start = cvtnum(s, p.operands[0]!);
      let count = p.operands[1] === undefined ? 512 : cvtnum(s, p.operands[1]);
      const d = s.disk!;
      let off = start;
      let remaining = count;
      let sum = 0;
      // bdrv_is_allocated: allocated (data or zero flag) in this layer, not in a backing file.
      while (remaining > 0) {
        if (off >= d.size) {
          count -= remaining;
          break;
        }
        const st = d.blockStatus(off, remaining);
        const num = Math.min(st.length, remaining);
        if (num <= 0) {
          count -= remaining;
          break;
        }
        if (st.present && st.depth === 0) sum += num;
        off += num;
        remaining -= num;
      }
      s.io.out(`${sum}/${count} bytes allocated at offset ${cvtstr(start)}\n`);
    },
  },
  {
    name: 'sigraise',
    args: 'signal',
    help: 'raises a signal',
    opts: '',
    min: 1,
    max: 1,
    needsFile: false,
    run(s, p) {
      const sig = cvtnum(s, p.operands[0]!);
      if (sig > 65) {
        s.io.out(`signal argument '${p.operands[0]!}' is too large to be a valid signal\n`);
        throw new CmdFailed();
      }
      // A crash as QEMU's tests use it: the process dies with nothing flushed or closed.
      process.kill(process.pid, sig);
    },
  },
  {
    name: 'discard',
    alias: 'd',
    args: '[-Cq] off len',
    help: 'discards a number of bytes at a specified offset',
    opts: 'Cq',
    min: 2,
    max: 2,
    needsFile: true,
    run(s, p) {
      const [off, len] = offLen(s, p);
      const t0 = process.hrtime.bigint();
      try {
        s.disk!.discard(off, len);
      } catch (e) {
        opFailed(s, 'discard', e);
      }
      if (!has(p, 'q')) s.io.out(ioReport('discard', off, len, len, 1, elapsed(t0)));
    },
  },
  {
    name: 'flush',
    alias: 'f',
    args: '',
    help: 'flush all in-core file state to disk',
    opts: '',
    min: 0,
    max: 0,
    needsFile: true,
    run(s) {
      try {
        s.disk!.flush();
      } catch (e) {
        opFailed(s, 'flush', e);
      }
    },
  },
  {
    name: 'truncate',
    alias: 't',
    args: '[-m prealloc_mode] off',
    help: 'truncates the current file at the given offset',
    opts: 'm:',
    min: 1,
    max: 1,
    needsFile: true,
    run(s, p) {
      const size = cvtnum(s, p.operands[0]!);
      const m = last(p, 'm');
      if (m !== undefined && m !== 'off') {
        if (size < s.disk!.size) {
          s.io.err("qemu-io: Preallocation can't be used for shrinking an image\n");
          throw new CmdFailed();
        }
      }
      try {
        s.disk!.resize(size, { shrink: true });
      } catch (e) {
        s.io.err(`qemu-io: ${e instanceof Error ? e.message : String(e)}\n`);
        throw new CmdFailed();
      }
    },
  },
  {
    name: 'length',
    alias: 'l',
    args: '',
    help: 'gets the length of the current file',
    opts: '',
    min: 0,
    max: 0,
    needsFile: true,
    run(s) {
      s.io.out(`${cvtstr(s.disk!.size)}\n`);
    },
  },
  {
    name: 'info',
    alias: 'i',
    args: '',
    help: 'prints information about the current file',
    opts: '',
    min: 0,
    max: 0,
    needsFile: true,
    run(s) {
      const d = s.disk!;
      s.io.out(`format name: ${d.format}\n`);
      if (!isQcow2(d)) {
        s.io.out('cluster size: 0 bytes\nvm state offset: 0 bytes\n');
        return;
      }
      const ext = (d.header.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
      const l2Bits = d.clusterBits - 3 - (ext ? 1 : 0);
      const vmState = l1EntriesFor(d.size, d.clusterBits, ext) * 2 ** (d.clusterBits + l2Bits);
      s.io.out(`cluster size: ${cvtstr(d.clusterSize)}\nvm state offset: ${cvtstr(vmState)}\n`);
      const fsInfo = imageInfo(d, d.filename)['format-specific'] as JsonObject;
      s.io.out(`Format specific information:\n${dumpQdict(fsInfo.data as JsonObject, 1)}`);
    },
  },
  {
    name: 'map',
    args: '',
    help: 'prints the allocated areas of a file',
    opts: '',
    min: 0,
    max: 0,
    needsFile: true,
    run(s) {
      const d = s.disk!;
      const size = d.size;
      let off = 0;
      while (off < size) {
        const first = d.blockStatus(off, size - off);
        const alloc = first.present && first.depth === 0;
        let num = Math.min(first.length, size - off);
        while (off + num < size) {
          const st = d.blockStatus(off + num, size - off - num);
          if ((st.present && st.depth === 0) !== alloc || st.length <= 0) break;
          num += Math.min(st.length, size - off - num);
        }
        s.io.out(
          `${cvtstr(num)} (0x${num.toString(16)}) bytes ${alloc ? '    allocated' : 'not allocated'} at offset ${cvtstr(off)} (0x${off.toString(16)})\n`,
        );
        off += num;
      }
    },
  },
  {
    name: 'open',
    alias: 'o',
    args: '[-Crsn] [-o options] [-f fmt] [file]',
    help: 'open the file specified by path',
    opts: 'Crsno:f:U',
    min: 0,
    max: 1,
    needsFile: false,
    run(s, p) {
      if (s.disk) {
        s.io.err("qemu-io: file open already, try 'help close'\n");
        throw new CmdFailed();
      }
      // -o: block-layer options; the driver and the file name are what this engine can honour.
      const o = parseOptString(all(p, 'o').join(','));
      const driver = o.get('driver');
      if (driver !== undefined && !['qcow2', 'raw', 'file'].includes(driver)) {
        s.io.err(
          `qemu-io: can't open${p.operands[0] ? ` device ${p.operands[0]}` : ''}: Unknown driver '${driver}'\n`,
        );
        throw new CmdFailed();
      }
      const nested = [...o.keys()].find(
        (k) => /^file\.(driver|file\.)/.test(k) && o.get('file.driver') !== 'file',
      );
      if (nested !== undefined) {
        s.io.err(`qemu-io: can't open: option '${nested}' is not supported by this engine\n`);
        throw new CmdFailed();
      }
      const file = p.operands[0] ?? o.get('file.filename') ?? o.get('filename');
      if (file === undefined) return usage(s, this);
      const fmt = driver === 'file' ? 'raw' : parseFormat(driver ?? last(p, 'f'));
      s.open(file, fmt ?? s.format, has(p, 'r') || o.get('read-only') === 'on', {
        snapshot: has(p, 's'),
        copyOnRead: has(p, 'C'),
      });
    },
  },
  {
    name: 'reopen',
    args: '[(-r|-w)] [-c cache] [-o options]',
    help: 'reopens an image with new options',
    opts: 'c:o:rw',
    min: 0,
    max: 0,
    needsFile: true,
    run(s, p) {
      if (has(p, 'r') && has(p, 'w')) {
        s.io.err('qemu-io: Only one -r/-w option may be given\n');
        throw new CmdFailed();
      }
      const cache = last(p, 'c');
      if (cache !== undefined && !CACHE_MODES.includes(cache)) {
        s.io.err(`qemu-io: Invalid cache option: ${cache}\n`);
        throw new CmdFailed();
      }
      const o = parseOptString(all(p, 'o').join(','));
      for (const k of o.keys()) {
        if (k !== 'read-only') {
          s.io.err(`qemu-io: Cannot change the option '${k}'\n`);
          throw new CmdFailed();
        }
      }
      const d = s.disk!;
      const readOnly = has(p, 'r')
        ? true
        : has(p, 'w')
          ? false
          : o.has('read-only')
            ? o.get('read-only') === 'on'
            : d.readOnly;
      if (readOnly === d.readOnly) return;
      const file = d.filename;
      const format = d.format;
      d.close();
      s.disk = undefined;
      s.open(file, format, readOnly);
    },
  },
  {
    name: 'close',
    alias: 'c',
    args: '',
    help: 'close the current open file',
    opts: '',
    min: 0,
    max: 0,
    needsFile: true,
    run(s) {
      s.disk!.close();
      s.disk = undefined;
    },
  },
  {
    name: 'quit',
    alias: 'q',
    args: '',
    help: 'exit the program',
    opts: '',
    min: 0,
    max: 0,
    needsFile: false,
    run(s) {
      s.quit = true;
    },
  },
  {
    name: 'help',
    alias: '?',
    args: '[command]',
    help: 'help for one or all commands',
    opts: '',
    min: 0,
    max: 1,
    needsFile: false,
    run(s) {
      for (const c of COMMANDS) s.io.out(`${c.name} ${c.args} -- ${c.help}\n`);
    },
  },
];

/**
 * Copy-on-read (qemu-io -C): before a read, the clusters it touches that the top image does not
 * allocate are filled from the backing chain (as zero clusters where the data reads as zeros), as
 * QEMU's copy-on-read does, cluster-aligned and clamped to the disk's end.
 */
function copyOnRead(s: Session, off: number, len: number): void {
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
function iovecLengths(s: Session, args: string[]): number {
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
function vectoredRead(s: Session, p: Parsed, c: Cmd, failName: string): void {
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
function vectoredWrite(s: Session, p: Parsed, c: Cmd, failName: string): void {
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

function usage(s: Session, c: Cmd): never {
  s.io.out(`${c.name} ${c.args} -- ${c.help}\n`);
  throw new CmdFailed();
}

function notAligned(s: Session, arg: string, what: string): never {
  s.io.out(`${arg} is not a sector-aligned value for '${what}'\n`);
  throw new CmdFailed();
}

/**
 * qemu-io -s (snapshot mode): the image opens read-only under a temporary qcow2 overlay that takes
 * every write and is deleted on close, so the image itself is never changed.
 */
function openSnapshotOverlay(
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

class Session {
  disk: GuestDisk | undefined;
  quit = false;
  lock: CliLockOptions = {};
  /** Runtime cache options from --image-opts. */
  cache: OpenOptions['cache'];
  /** Set once the current aio command's request was submitted (later failures do not fail it). */
  submitted = false;
  /** -C: data read through from a backing file is written into the top image. */
  copyOnRead = false;
  constructor(
    readonly io: Io,
    readonly format: 'qcow2' | 'raw' | undefined,
    readonly secret: Uint8Array | undefined,
  ) {}

  open(
    file: string,
    format: 'qcow2' | 'raw' | undefined,
    readOnly: boolean,
    mode: { snapshot?: boolean; copyOnRead?: boolean } = {},
  ): void {
    try {
      if (mode.copyOnRead && readOnly) {
        throw new Error("Can't use copy-on-read on read-only device");
      }
      this.disk = mode.snapshot
        ? openSnapshotOverlay(file, format, this.secret)
        : openImage(file, { format, readOnly, secret: this.secret, cache: this.cache, ...this.lock });
      this.copyOnRead = mode.copyOnRead === true;
    } catch (e) {
      this.io.err(`qemu-io: can't open device ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
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
    const cmd = COMMANDS.find((c) => c.name === name || c.alias === name);
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
      return true;
    } catch (e) {
      if (e instanceof CmdFailed) return false;
      this.io.err(`${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      return false;
    }
  }
}

function optTakesArg(spec: string, word: string): boolean {
  if (!/^-[A-Za-z]+$/.test(word)) return false;
  const c = word[word.length - 1]!;
  const i = spec.indexOf(c);
  return i >= 0 && spec[i + 1] === ':';
}

export async function cmdIo(argv: string[], io: Io): Promise<number> {
  // qemu-io 7.2's options. Cache modes, AIO back-ends and -k/-m only tune how QEMU talks to the
  // host file; this engine's I/O is synchronous, so they are validated and otherwise ignored.
  const p = getopt(argv, 'hVrsnCmkc:f:t:d:T:Ui:', [
    { name: 'object', arg: 'required' },
    { name: 'image-opts', arg: 'none' },
    { name: 'cmd', arg: 'required', key: 'c' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'read-only', arg: 'none', key: 'r' },
    { name: 'snapshot', arg: 'none', key: 's' },
    { name: 'nocache', arg: 'none', key: 'n' },
    { name: 'copy-on-read', arg: 'none', key: 'C' },
    { name: 'misalign', arg: 'none', key: 'm' },
    { name: 'native-aio', arg: 'none', key: 'k' },
    { name: 'discard', arg: 'required', key: 'd' },
    { name: 'cache', arg: 'required', key: 't' },
    { name: 'aio', arg: 'required', key: 'i' },
    { name: 'trace', arg: 'required', key: 'T' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'version', arg: 'none', key: 'V' },
  ]);
  const cache = last(p, 't');
  if (cache !== undefined && !CACHE_MODES.includes(cache)) {
    throw new UsageError(`Invalid cache option: ${cache}`, false);
  }
  const aio = last(p, 'i');
  if (aio !== undefined && !['threads', 'native', 'io_uring'].includes(aio)) {
    throw new UsageError(`Invalid aio option: ${aio}`, false);
  }
  const discard = last(p, 'd');
  if (discard !== undefined && !['ignore', 'off', 'unmap', 'on'].includes(discard)) {
    throw new UsageError(`Invalid discard option: ${discard}`, false);
  }
  if (p.operands.length > 1) throw new UsageError(`Unexpected argument: ${p.operands[1]!}`, false);
  const secrets = secretsOf(p);
  let format = parseFormat(last(p, 'f'));
  let file = p.operands[0];
  let secret = secrets.size === 1 ? [...secrets.values()][0] : undefined;
  if (has(p, 'image-opts') && file !== undefined) {
    const o = parseImageOpts(file);
    file = o.filename;
    format = o.format;
    if (o.secretId) secret = secrets.get(o.secretId);
  }
  const s = new Session(io, format, secret);
  s.lock = lockOptionsOf(p, has(p, 'image-opts') ? p.operands[0] : undefined);
  if (has(p, 'image-opts') && file !== undefined) s.cache = cacheOptionsOf(p.operands[0]!);
  let ok = true;
  try {
    if (file !== undefined) {
      try {
        s.open(file, format, has(p, 'r'), { snapshot: has(p, 's'), copyOnRead: has(p, 'C') });
      } catch {
        return 1;
      }
    }
    const cmds = all(p, 'c');
    if (cmds.length > 0) {
      for (const c of cmds) {
        if (!s.command(c)) ok = false;
        if (s.quit) break;
      }
    } else {
      const lines = fs.readFileSync(0, 'utf8').split('\n');
      if (lines[lines.length - 1] !== '') lines.push('');
      for (const l of lines) {
        io.out('qemu-io> ');
        if (!s.command(l)) ok = false;
        if (s.quit) break;
      }
    }
  } finally {
    closeQuietly(s.disk);
  }
  if (!ok) return 1;
  return 0;
}
