/**
 * qemu-io's commands for `qcow2 io` (read, write, readv, writev, aio_*, discard, flush, map, info,
 * length, truncate, alloc, open, reopen, close, sigraise, quit, help …), each with qemu-io 7.2's
 * options and output text. They act on a Session (io-session.ts).
 */
import * as C from '../format/constants.ts';
import type { Qcow2Image } from '../image.ts';
import { l1EntriesFor } from '../format/header.ts';
import { all, has, last, parseFormat, parseOptString } from './args.ts';
import { isQcow2 } from './common.ts';
import { cacheOptionsOf } from './cache-opts.ts';
import { discardOptionsOf, parseDiscardMode } from './discard-opts.ts';
import { reopen } from './io-reopen.ts';
import { jsonNameOf, needsTree, parseJsonOptions, subOptions } from '../block-tree.ts';
import { cvtstr, dumpQdict, ioReport } from './format.ts';
import { imageInfo } from './info.ts';
import { aioRequest, BREAKPOINT_COMMANDS } from './io-breakpoints.ts';
import type { JsonObject } from './format.ts';
import {
  bufferFromFile,
  CmdFailed,
  copyOnRead,
  cvtnum,
  dumpBuffer,
  elapsed,
  notAligned,
  offLen,
  opFailed,
  patternByte,
  usage,
  vectoredRead,
  vectoredWrite,
  type Cmd,
  type Session,
} from './io-session.ts';

export const COMMANDS: Cmd[] = [
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
      const b = has(p, 'b');
      if (b && off % 512) return notAligned(s, p.operands[0]!, 'offset');
      if (b && len % 512) return notAligned(s, p.operands[1]!, 'count');
      const vm = b ? vmStateDisk(s, 'read') : undefined;
      const t0 = process.hrtime.bigint();
      let buf: Uint8Array;
      try {
        if (vm) buf = vm.readVmState(off, len);
        else {
          copyOnRead(s, off, len);
          buf = s.disk!.read(off, len);
        }
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
    args: '[-bcCfnquz] [-P pattern | -s source_file] off len',
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
      const b = has(p, 'b');
      if (b && z) {
        s.io.out('-b and -z cannot be specified at the same time\n');
        throw new CmdFailed();
      }
      if (has(p, 'f') && (b || c)) {
        s.io.out('-f and -b or -c cannot be specified at the same time\n');
        throw new CmdFailed();
      }
      const pat = has(p, 'P') ? patternByte(s, last(p, 'P')!) : 0xcd;
      const [off, len] = offLen(s, p);
      if (c || b) {
        if (off % 512) return notAligned(s, p.operands[0]!, 'offset');
        if (len % 512) return notAligned(s, p.operands[1]!, 'count');
      }
      // -s FILE: the buffer is FILE's bytes, repeated when FILE is shorter (qemu-io 7.2's
      // qemu_io_alloc_from_file); without it stamped writes in case scripts would write 0xcd.
      const src = has(p, 's') ? bufferFromFile(s, last(p, 's')!, len) : undefined;
      const d = s.disk!;
      const data = (): Uint8Array => src ?? new Uint8Array(len).fill(pat);
      const vm = b ? vmStateDisk(s, 'write') : undefined;
      const t0 = process.hrtime.bigint();
      try {
        if (vm) vm.writeVmState(off, data());
        else if (z) d.writeZeroes(off, len, { unmap: has(p, 'u') });
        else if (c) {
          if (!isQcow2(d)) throw new Error('compression unsupported');
          d.writeCompressed(off, data());
        } else d.write(off, data());
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
      aioRequest(s, p.operands, () => {
        try {
          vectoredRead(s, p, this, 'readv');
        } catch (e) {
          if (!(e instanceof CmdFailed) || !s.submitted) throw e;
        }
      });
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
      aioRequest(s, p.operands, () => {
        try {
          vectoredWrite(s, p, this, 'writev');
        } catch (e) {
          if (!(e instanceof CmdFailed) || !s.submitted) throw e;
        }
      });
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
        const st = d.blockStatus(off, Math.min(remaining, d.size - off));
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
      // null-co is a protocol driver: QEMU prints its format and protocol names, and it has no
      // driver info (bdrv_get_info fails, so does the command).
      if (s.openOptions.get('driver') === 'null-co') {
        s.io.out('format name: null-co\nformat name: null-co\n');
        throw new CmdFailed();
      }
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
    opts: 'Crsno:f:Ud:',
    min: 0,
    max: 1,
    needsFile: false,
    run(s, p) {
      if (s.disk) {
        s.io.err("qemu-io: file open already, try 'help close'\n");
        throw new CmdFailed();
      }
      // -o: block-layer options; a node tree beyond a format over a file opens through block-tree.ts.
      const o = parseOptString(all(p, 'o').join(','));
      if (needsTree(o) || p.operands[0]?.startsWith('json:')) {
        // Options given directly take priority over those of a json: file name.
        const name = p.operands[0];
        const tree = name?.startsWith('json:') ? parseJsonOptions(name) : new Map<string, string>();
        // A plain file name names the protocol node when its options are given (file.node-name=…).
        const fileOpts = [...o.keys()].some((k) => k.startsWith('file.')) && !o.has('file.filename');
        if (name !== undefined && !name.startsWith('json:'))
          tree.set(fileOpts ? 'file.filename' : 'filename', name);
        for (const [k, v] of o) if (k !== 'read-only') tree.set(k, v);
        const readOnly = has(p, 'r') || o.get('read-only') === 'on';
        // The copy-on-read filter (block/copy-on-read.c) over its file child: qemu-io's -C mode.
        const cor = tree.get('driver') === 'copy-on-read';
        if (cor && readOnly) {
          s.io.err(
            `qemu-io: can't open${name === undefined ? '' : ` device ${name}`}: Block node is read-only\n`,
          );
          throw new CmdFailed();
        }
        const node = cor ? subOptions(tree, 'file') : tree;
        s.openOptions = tree;
        if (cor && tree.has('filename')) node.set('filename', tree.get('filename')!);
        s.open(jsonNameOf(node), s.format, readOnly, {
          snapshot: has(p, 's'),
          copyOnRead: has(p, 'C') || cor,
          displayName: name ?? null,
        });
        return;
      }
      // A protocol driver, another driver or a backing file's options went to the tree above.
      const driver = o.get('driver');
      const nested = [...o.keys()].find(
        (k) => /^file\.(driver|file\.)/.test(k) && o.get('file.driver') !== 'file',
      );
      if (nested !== undefined) {
        s.io.err(`qemu-io: can't open: option '${nested}' is not supported by this engine\n`);
        throw new CmdFailed();
      }
      const file = p.operands[0] ?? o.get('file.filename') ?? o.get('filename');
      if (file === undefined) return usage(s, this);
      const readOnly = has(p, 'r') || o.get('read-only') === 'on';
      const fmt = parseFormat(driver ?? last(p, 'f'));
      // open -d (qemu-io's open_f also starts from BDRV_O_UNMAP) and -o discard=, pass-discard-*
      const d = last(p, 'd');
      if (d !== undefined && parseDiscardMode(d) === undefined) {
        s.io.err(`qemu-io: Invalid discard option: ${d}\n`);
        throw new CmdFailed();
      }
      try {
        // qcow2's runtime cache options (cache-size, l2-cache-size, ...) apply to this open.
        const cache = cacheOptionsOf(all(p, 'o').join(','));
        if (cache) s.cache = cache;
        s.discard = discardOptionsOf(d, all(p, 'o').join(','), true);
      } catch (e) {
        s.io.err(`qemu-io: can't open device ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
        throw new CmdFailed();
      }
      s.openOptions = o;
      s.open(file, fmt ?? s.format, readOnly, {
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
      reopen(s, p);
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
  ...BREAKPOINT_COMMANDS,
];

/**
 * Copy-on-read (qemu-io -C): before a read, the clusters it touches that the top image does not
 * allocate are filled from the backing chain (as zero clusters where the data reads as zeros), as
 * QEMU's copy-on-read does, cluster-aligned and clamped to the disk's end.
 */

/** The open image's VM-state area; formats without one fail as qemu-io does (ENOTSUP). */
function vmStateDisk(s: Session, op: string): Qcow2Image {
  const d = s.disk!;
  if (!isQcow2(d)) {
    s.io.out(`${op} failed: Operation not supported\n`);
    throw new CmdFailed();
  }
  return d;
}
