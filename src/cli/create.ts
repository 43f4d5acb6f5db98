/** `qcow2 create [-f fmt] [-o opts] [-b backing -F fmt] [-u] [-q] FILE [SIZE]` as qemu-img create. */
import * as fs from 'node:fs';
import type { CreateOptions } from '../api.ts';
import { ArgumentError, Qcow2Error } from '../errors.ts';
import { validateCreateOptions } from '../engine/options.ts';
import { exactInt } from './format.ts';
import { Qcow2Image } from '../image.ts';
import { openImage } from '../open.ts';
import { createLuksImage, type CreateLuksImageOptions } from '../engine/luks-image.ts';
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
import { ENCRYPT_KEYS, QCOW2_CREATE_KEYS } from './qcow2-options.ts';

const QCOW2_KEYS = new Set([
  ...QCOW2_CREATE_KEYS,
  // The file protocol's option (raw-posix): an XFS extent size hint. Accepted and checked as
  // QEMU does; it sets no hint here (QEMU too ignores it on file systems without the ioctl).
  'extent_size_hint',
]);

/** The file protocol's extent_size_hint: a size of at most 2^32 - 1 (raw_co_create). */
function checkExtentSizeHint(file: string, o: Map<string, string>): void {
  const v = o.get('extent_size_hint');
  if (v !== undefined && sizeOpt(file, 'extent_size_hint', v) > 0xffffffff)
    fail(file, 'Extent size hint is too large');
}

function fail(file: string, msg: string): never {
  throw new Qcow2Error('INVALID_OPTION', `${file}: ${msg}`);
}

function sizeOpt(file: string, key: string, v: string): number {
  const n = parseSize(v);
  if (typeof n !== 'number') {
    // QEMU's option parser (parse_option_size), with its hint on the suffixes.
    throw new Qcow2Error(
      'INVALID_OPTION',
      `${file}: Parameter '${key}' expects a non-negative number below 2^64`,
      {
        hint: 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n',
      },
    );
  }
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
    else fail(file, `Parameter 'version' does not accept value '${compat}'`);
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
  checkExtentSizeHint(file, o);
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
  const norm = (k: string, v: string): string =>
    k === 'cluster_size' || k === 'extent_size_hint' ? String(parseSize(v)) : v;
  const opt = (k: string, dflt?: string): void => {
    const v = o.get(k) ?? dflt;
    // qemu_opts_print doubles the commas of string-typed values (escaped_print).
    const str = !['cluster_size', 'extended_l2', 'lazy_refcounts', 'refcount_bits', 'data_file_raw'].includes(
      k,
    );
    if (v !== undefined) parts.push(`${k}=${str ? norm(k, v).replace(/,/g, ',,') : norm(k, v)}`);
  };
  if (fmt === 'raw') {
    parts.push(`size=${exactInt(size)}`);
    opt('preallocation');
    opt('extent_size_hint');
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
    opt('extent_size_hint');
  }
  return `Formatting '${file}', ${parts.join(' ')}\n`;
}

export async function cmdCreate(argv: string[], io: Io): Promise<number> {
  const p = getopt(argv, ':F:b:f:ho:qu', [
    { name: 'object', arg: 'required' },
    { name: 'help', arg: 'none', key: 'h' },
  ]);
  const fmtArg = last(p, 'f');
  const fmt = fmtArg === 'luks' ? 'luks' : (parseFormat(fmtArg) ?? 'raw');
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
  // bdrv_img_create: the -o options are parsed first (a bad size there is the option parser's
  // error), then a size given both ways is refused.
  if (o.has('cluster_size')) sizeOpt(file, 'cluster_size', o.get('cluster_size')!);
  if (o.has('extent_size_hint')) sizeOpt(file, 'extent_size_hint', o.get('extent_size_hint')!);
  if (o.has('size')) {
    const s = sizeOpt(file, 'size', o.get('size')!);
    if (size !== undefined) fail(file, 'The image size must be specified only once');
    size = s;
  }
  o.delete('size');
  if (fmt === 'qcow2') size = checkBackingForCreate(file, o, size, has(p, 'u'));
  if (size === undefined) throw new Qcow2Error('NO_SIZE', `${file}: Image creation needs a size parameter`);
  if (fmt === 'luks') {
    for (const k of o.keys()) if (!LUKS_KEYS.includes(k)) fail(file, `Invalid parameter '${k}'`);
    if (!has(p, 'q')) io.out(luksFormattingLine(file, o, size));
    createLuks(file, o, size, secrets);
    return 0;
  }
  if (!has(p, 'q')) io.out(formattingLine(file, fmt, o, size));
  if (fmt === 'raw') {
    for (const k of o.keys())
      if (k !== 'preallocation' && k !== 'extent_size_hint') fail(file, `Invalid parameter '${k}'`);
    checkExtentSizeHint(file, o);
    createRaw(file, size, o.get('preallocation'));
    return 0;
  }
  try {
    // Option errors too are prefixed with the file name, as qemu-img create does.
    Qcow2Image.create(file, {
      ...qcow2CreateOptions(file, o, size, secrets),
      openBacking: !has(p, 'u'),
    }).close();
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

/**
 * qemu-img create's backing file rules (bdrv_img_create), in its order: the name must differ from
 * the new image's and not be empty; unless -u, the backing file is opened (no I/O, shared, with its
 * chain) and must open, and its format must then be named (-F); it gives the size when none was.
 * With -u it is not opened, and the format must still be named.
 */
function checkBackingForCreate(
  file: string,
  o: Map<string, string>,
  size: number | undefined,
  unsafe: boolean,
): number | undefined {
  const backing = o.get('backing_file');
  if (backing === undefined) return size;
  if (backing === file)
    fail(file, 'Error: Trying to create an image with the same filename as the backing file');
  if (backing === '') fail(file, 'Expected backing file name, got empty string');
  const bfmt = o.get('backing_fmt');
  if (unsafe) {
    if (bfmt === undefined)
      throw new Qcow2Error('NO_BACKING_FMT', `${file}: Backing file specified without backing format`);
    if (size === undefined) throw new Qcow2Error('NO_SIZE', `${file}: Image creation needs a size parameter`);
    return size;
  }
  let bd;
  try {
    bd = openImage(combinePath(file, backing), {
      driver: bfmt,
      readOnly: true,
      noIo: true,
      forceShare: true,
    });
  } catch (e) {
    if (e instanceof Qcow2Error)
      throw new Qcow2Error(e.code, `${file}: ${e.message}`, {
        ...e.data,
        hint: 'Could not open backing image.\n',
      });
    throw e;
  }
  try {
    if (bfmt === undefined)
      throw new Qcow2Error('NO_BACKING_FMT', `${file}: Backing file specified without backing format`, {
        // (QEMU's hint has no newline of its own)
        hint: `Detected format of ${bd.format}.`,
      });
    return size ?? bd.size;
  } finally {
    closeQuietly(bd);
  }
}

/** The luks format's create options (block/crypto.c), in QEMU's order, then the file's. */
const LUKS_KEYS = [
  'key-secret',
  'cipher-alg',
  'cipher-mode',
  'ivgen-alg',
  'ivgen-hash-alg',
  'hash-alg',
  'iter-time',
  'preallocation',
  'extent_size_hint',
];

function luksFormattingLine(file: string, o: Map<string, string>, size: number): string {
  const parts = [`fmt=luks`, `size=${exactInt(size)}`];
  for (const k of LUKS_KEYS) {
    const v = o.get(k);
    if (v !== undefined) parts.push(`${k}=${k === 'extent_size_hint' ? String(parseSize(v)) : v}`);
  }
  return `Formatting '${file}', ${parts.join(' ')}\n`;
}

/** `create -f luks`: a raw LUKS image (engine/luks-image.ts) with QEMU's option checks. */
function createLuks(
  file: string,
  o: Map<string, string>,
  size: number,
  secrets: Map<string, Uint8Array>,
): void {
  const id = o.get('key-secret');
  if (!id) fail(file, "Parameter 'key-secret' is required for cipher");
  const secret = lookupSecret(secrets, id);
  const alg = o.get('cipher-alg');
  if (alg !== undefined && alg !== 'aes-128' && alg !== 'aes-192' && alg !== 'aes-256')
    fail(file, `Parameter 'cipher-alg' does not accept value '${alg}'`);
  const mode = o.get('cipher-mode');
  if (mode !== undefined && mode !== 'xts' && mode !== 'cbc')
    fail(file, `Parameter 'cipher-mode' does not accept value '${mode}'`);
  const ivgen = o.get('ivgen-alg');
  if (ivgen !== undefined && ivgen !== 'plain' && ivgen !== 'plain64' && ivgen !== 'essiv')
    fail(file, `Parameter 'ivgen-alg' does not accept value '${ivgen}'`);
  const pa = o.get('preallocation') ?? 'off';
  if (pa !== 'off' && pa !== 'falloc' && pa !== 'full')
    fail(file, `Parameter 'preallocation' does not accept value '${pa}'`);
  checkExtentSizeHint(file, o);
  const it = o.get('iter-time');
  const opts: CreateLuksImageOptions = { preallocation: pa };
  if (alg !== undefined) opts.cipherAlg = alg;
  if (mode !== undefined) opts.cipherMode = mode;
  if (ivgen !== undefined) opts.ivgenAlg = ivgen;
  if (o.has('ivgen-hash-alg')) opts.ivgenHashAlg = o.get('ivgen-hash-alg')!;
  if (o.has('hash-alg')) opts.hashAlg = o.get('hash-alg')!;
  if (it !== undefined) opts.iterTimeMs = Number(it);
  try {
    createLuksImage(file, size, secret, opts);
  } catch (e) {
    if (e instanceof Qcow2Error && !e.message.startsWith(`${file}: `))
      throw new Qcow2Error(e.code, `${file}: ${e.message}`, e.data);
    throw e;
  }
}

export function createRaw(file: string, size: number, prealloc: string | undefined): void {
  if (prealloc !== undefined && !['off', 'falloc', 'full'].includes(prealloc)) {
    fail(file, `Parameter 'preallocation' does not accept value '${prealloc}'`);
  }
  // raw_co_create: the file's length is the size rounded up to whole 512-byte sectors.
  size = Math.ceil(size / 512) * 512;
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    if (prealloc === 'full' || prealloc === 'falloc') {
      const chunk = new Uint8Array(Math.min(size, 1 << 20));
      for (let off = 0; off < size; off += chunk.length)
        fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
    } else if (size > 0) {
      // file-posix's allocate_first_block: the first 4 KiB (512 bytes for a smaller file) are
      // written, so that the file is not one hole (QEMU's alignment probing; measure and map
      // then see one block of data there).
      fs.writeSync(fd, new Uint8Array(size < 4096 ? 512 : 4096), 0, size < 4096 ? 512 : 4096, 0);
    }
  } finally {
    fs.closeSync(fd);
  }
}
