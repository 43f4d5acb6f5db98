/** `qcow2 create [-f fmt] [-o opts] [-b backing -F fmt] [-u] [-q] FILE [SIZE]` as qemu-img create. */
import * as fs from 'node:fs';
import type { CreateOptions } from '../api.ts';
import { ArgumentError, Qcow2Error } from '../errors.ts';
import { validateCreateOptions } from '../engine/options.ts';
import { exactInt } from './format.ts';
import { Qcow2Image } from '../image.ts';
import { openImage } from '../open.ts';
import {
  all,
  getopt,
  has,
  last,
  lookupSecret,
  mergeOptStrings,
  parseBool,
  parseFormat,
  parseImageSize,
  parseSize,
  UsageError,
} from './args.ts';
import { closeQuietly, combinePath, secretsOf, type Io } from './common.ts';

const ENCRYPT_KEYS = [
  'encryption',
  'encrypt.format',
  'encrypt.key-secret',
  'encrypt.cipher-alg',
  'encrypt.cipher-mode',
  'encrypt.ivgen-alg',
  'encrypt.ivgen-hash-alg',
  'encrypt.hash-alg',
  'encrypt.iter-time',
];

const QCOW2_KEYS = new Set([
  'size',
  'compat',
  'backing_file',
  'backing_fmt',
  'data_file',
  'data_file_raw',
  ...ENCRYPT_KEYS,
  'cluster_size',
  'extended_l2',
  'preallocation',
  'lazy_refcounts',
  'refcount_bits',
  'compression_type',
]);

function fail(file: string, msg: string): never {
  throw new Qcow2Error('INVALID_OPTION', `${file}: ${msg}`);
}

function sizeOpt(file: string, key: string, v: string): number {
  const n = parseSize(v);
  if (typeof n !== 'number') fail(file, `Parameter '${key}' expects a non-negative number below 2^64`);
  return n;
}

/** Create options from qemu-img's -o keys (qcow2). Shared with convert -O qcow2. */
export function qcow2CreateOptions(
  file: string,
  o: Map<string, string>,
  size: number,
  secrets: Map<string, Uint8Array>,
): CreateOptions {
  for (const k of o.keys()) if (!QCOW2_KEYS.has(k)) fail(file, `Invalid parameter '${k}'`);
  const opts: CreateOptions = { size };
  const compat = o.get('compat');
  if (compat !== undefined) {
    if (compat === '0.10' || compat === 'v2') opts.compat = '0.10';
    else if (compat === '1.1' || compat === 'v3') opts.compat = '1.1';
    else fail(file, `Invalid parameter value for 'compat': '${compat}'`);
  }
  const cs = o.get('cluster_size');
  if (cs !== undefined) opts.clusterSize = sizeOpt(file, 'cluster_size', cs);
  const rb = o.get('refcount_bits');
  if (rb !== undefined) {
    if (!/^[0-9]+$/.test(rb)) fail(file, 'Refcount width must be a power of two and may not exceed 64 bits');
    opts.refcountBits = Number(rb);
  }
  if (o.has('lazy_refcounts')) opts.lazyRefcounts = parseBool('lazy_refcounts', o.get('lazy_refcounts')!);
  if (o.has('extended_l2')) opts.extendedL2 = parseBool('extended_l2', o.get('extended_l2')!);
  const ct = o.get('compression_type');
  if (ct !== undefined) {
    if (ct !== 'zlib' && ct !== 'zstd')
      fail(file, `Parameter 'compression_type' does not accept value '${ct}'`);
    opts.compressionType = ct;
  }
  const pa = o.get('preallocation');
  if (pa !== undefined) {
    if (pa !== 'off' && pa !== 'metadata' && pa !== 'falloc' && pa !== 'full')
      fail(file, `Parameter 'preallocation' does not accept value '${pa}'`);
    opts.preallocation = pa;
  }
  if (o.has('backing_file')) opts.backingFile = o.get('backing_file');
  const bf = o.get('backing_fmt');
  if (bf !== undefined) {
    if (bf !== 'qcow2' && bf !== 'raw') fail(file, `Unknown driver '${bf}'`);
    opts.backingFormat = bf;
  }
  if (o.has('data_file')) opts.dataFile = o.get('data_file');
  if (o.has('data_file_raw')) opts.dataFileRaw = parseBool('data_file_raw', o.get('data_file_raw')!);
  let encFormat = o.get('encrypt.format');
  if (o.has('encryption') && parseBool('encryption', o.get('encryption')!)) encFormat ??= 'aes';
  if (encFormat !== undefined) {
    if (encFormat !== 'aes' && encFormat !== 'luks')
      fail(file, `Parameter 'encrypt.format' does not accept value '${encFormat}'`);
    const id = o.get('encrypt.key-secret');
    if (!id) fail(file, "Parameter 'encrypt.key-secret' is required for cipher");
    opts.encrypt = { format: encFormat, secret: lookupSecret(secrets, id) };
    const alg = o.get('encrypt.cipher-alg');
    if (alg !== undefined) opts.encrypt.cipherAlg = alg;
    const it = o.get('encrypt.iter-time');
    if (it !== undefined) opts.encrypt.iterTimeMs = Number(it);
  }
  // The engine's rules decide (one validation); the CLI reports them as qemu-img does.
  try {
    validateCreateOptions(opts);
  } catch (e) {
    if (e instanceof ArgumentError) fail(file, e.message);
    throw e;
  }
  return opts;
}

/** The "Formatting 'F', fmt=qcow2 ..." line in qemu-img 7.2's order. */
export function formattingLine(
  file: string,
  fmt: 'qcow2' | 'raw',
  o: Map<string, string>,
  size: number,
): string {
  const parts: string[] = [`fmt=${fmt}`];
  const norm = (k: string, v: string): string => (k === 'cluster_size' ? String(parseSize(v)) : v);
  const opt = (k: string, dflt?: string): void => {
    const v = o.get(k) ?? dflt;
    if (v !== undefined) parts.push(`${k}=${norm(k, v)}`);
  };
  if (fmt === 'raw') {
    parts.push(`size=${exactInt(size)}`);
    opt('preallocation');
  } else {
    for (const k of ENCRYPT_KEYS) opt(k);
    opt('cluster_size', '65536');
    opt('extended_l2', 'off');
    opt('preallocation');
    opt('compression_type', 'zlib');
    parts.push(`size=${exactInt(size)}`);
    for (const k of ['compat', 'backing_file', 'backing_fmt', 'data_file', 'data_file_raw']) opt(k);
    opt('lazy_refcounts', 'off');
    opt('refcount_bits', '16');
  }
  return `Formatting '${file}', ${parts.join(' ')}\n`;
}

export async function cmdCreate(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':F:b:f:ho:qu', [
    { name: 'object', arg: 'required' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const fmt = parseFormat(last(p, 'f')) ?? 'raw';
  const o = mergeOptStrings(all(p, 'o'));
  const b = last(p, 'b');
  if (b !== undefined) o.set('backing_file', b);
  const F = last(p, 'F');
  if (F !== undefined) o.set('backing_fmt', F);
  if (p.operands.length < 1) throw new UsageError('Expecting image file name');
  if (p.operands.length > 2) throw new UsageError(`Unexpected argument: ${p.operands[2]!}`);
  const file = p.operands[0]!;
  const secrets = secretsOf(p);
  let size: number | undefined;
  if (p.operands[1] !== undefined) size = parseImageSize(p.operands[1]);
  else if (o.has('size')) size = parseImageSize(o.get('size')!);
  o.delete('size');
  if (fmt === 'qcow2' && o.has('backing_file') && !o.has('backing_fmt')) {
    // qemu 7.2 requires the backing format to be named.
    throw new Qcow2Error('NO_BACKING_FMT', `${file}: Backing file specified without backing format`);
  }
  if (size === undefined && fmt === 'qcow2' && o.has('backing_file')) {
    if (has(p, 'u')) throw new Qcow2Error('NO_SIZE', `${file}: Image creation needs a size parameter`);
    const bpath = combinePath(file, o.get('backing_file')!);
    const bf = o.get('backing_fmt');
    const bd = openImage(bpath, { format: bf === 'raw' || bf === 'qcow2' ? bf : undefined, readOnly: true });
    size = bd.size;
    closeQuietly(bd);
  }
  if (size === undefined) throw new Qcow2Error('NO_SIZE', `${file}: Image creation needs a size parameter`);
  if (!has(p, 'q')) io.out(formattingLine(file, fmt, o, size));
  if (fmt === 'raw') {
    for (const k of o.keys()) if (k !== 'preallocation') fail(file, `Invalid parameter '${k}'`);
    createRaw(file, size, o.get('preallocation'));
    return 0;
  }
  try {
    // Option errors too are prefixed with the file name, as qemu-img create does.
    Qcow2Image.create(file, qcow2CreateOptions(file, o, size, secrets)).close();
  } catch (e) {
    // qemu-img's wording for an L1 table beyond QCOW_MAX_L1_SIZE (qcow2_co_create).
    if (e instanceof Qcow2Error && e.code === 'IMAGE_TOO_BIG') {
      throw new Qcow2Error(
        e.code,
        `${file}: The image size is too large for file format 'qcow2' (try using a larger cluster size)`,
        e.data,
      );
    }
    if (e instanceof Qcow2Error && !e.message.startsWith(`${file}: `))
      throw new Qcow2Error(e.code, `${file}: ${e.message}`, e.data);
    throw e;
  }
  return 0;
}

export function createRaw(file: string, size: number, prealloc: string | undefined): void {
  if (prealloc !== undefined && !['off', 'falloc', 'full'].includes(prealloc)) {
    fail(file, `Parameter 'preallocation' does not accept value '${prealloc}'`);
  }
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    if (prealloc === 'full' || prealloc === 'falloc') {
      const chunk = new Uint8Array(Math.min(size, 1 << 20));
      for (let off = 0; off < size; off += chunk.length)
        fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
    }
  } finally {
    fs.closeSync(fd);
  }
}
