/**
 * `qcow2 io [-f fmt] [-r] [-c CMD]... [--object ...] [--image-opts] [FILE]`: qemu-io's command
 * language (read, write, discard, flush, map, info, length, truncate, open, close, quit) with its
 * output text. Commands come from -c, or from standard input (with qemu-io's "qemu-io> " prompt).
 * Exit status 1 when any command failed (qemu-io 7.2), 0 otherwise. The session and its dispatcher
 * are in io-session.ts, the commands in io-commands.ts; this file parses qemu-io's command line.
 */
import * as fs from 'node:fs';
import { lockOptionsOf } from './lock-options.ts';
import { all, getopt, has, last, parseFormat, parseImageOpts, parseOptString, UsageError } from './args.ts';
import { jsonNameOf, needsTree, parseJsonOptions } from '../block-tree.ts';
import { closeQuietly, secretsOf, type Io } from './common.ts';
import { cacheOptionsOf } from './cache-opts.ts';
import { discardOptionsOf } from './discard-opts.ts';
import { CACHE_MODES, cacheModeWritesThrough, Session } from './io-session.ts';
import { COMMANDS } from './io-commands.ts';

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
  let file = p.operands[0];
  // A json: name carries its own driver; -f may name it again (qemu-io -f null-co json:{...}).
  const json = file?.startsWith('json:') ? parseJsonOptions(file) : undefined;
  let format = json && json.get('driver') === last(p, 'f') ? undefined : parseFormat(last(p, 'f'));
  let secret = secrets.size === 1 ? [...secrets.values()][0] : undefined;
  const tree = has(p, 'image-opts') && file !== undefined ? parseOptString(file) : undefined;
  if (tree && needsTree(tree)) {
    file = jsonNameOf(tree); // a node tree (block-tree.ts)
    format = undefined;
  } else if (has(p, 'image-opts') && file !== undefined) {
    const o = parseImageOpts(file);
    file = o.filename;
    format = o.format;
    if (o.secretId) secret = secrets.get(o.secretId);
  }
  const s = new Session(io, format, secret, COMMANDS);
  s.secrets = secrets;
  s.openOptions = tree ?? json ?? new Map();
  s.lock = lockOptionsOf(p, has(p, 'image-opts') ? p.operands[0] : undefined);
  if (has(p, 'image-opts') && file !== undefined) s.cache = cacheOptionsOf(p.operands[0]!);
  // qemu-io opens with BDRV_O_UNMAP unless -d ignore|off; --image-opts may say discard=, pass-discard-*
  try {
    s.discard = discardOptionsOf(discard, has(p, 'image-opts') ? p.operands[0] : undefined, true);
  } catch (e) {
    // bdrv_open's option errors, as qemu-io reports a failed open
    io.err(`qemu-io: can't open: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  // -n and -t none/writeback/unsafe turn writethrough off; the last of them wins, as in qemu-io.
  for (const o of p.opts) {
    if (o.key === 'n') s.writethrough = false;
    else if (o.key === 't') s.writethrough = cacheModeWritesThrough(o.value ?? '');
  }
  let ok = true;
  try {
    if (file !== undefined) {
      try {
        s.open(file, format, has(p, 'r'), {
          snapshot: has(p, 's'),
          copyOnRead: has(p, 'C'),
          imageOpts: has(p, 'image-opts'),
        });
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
