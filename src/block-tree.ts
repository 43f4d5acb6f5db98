/**
 * QEMU's block-node options as a tree (`json:{...}` names, `--image-opts` and qemu-io's `open -o`
 * strings, `blkdebug:CONFIG:FILE` names): a format node (qcow2, raw) over a protocol node (file,
 * blkdebug, null-co, or another format node: a format over a format), with qcow2's `data-file`
 * child and its backing file (`backing.driver`, `backing.file.filename`,
 * `backing.encrypt.key-secret`, `backing: null`). Options arrive flattened with dots
 * (`file.driver`, `inject-error.0.event`), as QEMU's qdict_flatten gives them. This module is the
 * one place that knows the drivers and the options each node takes (KNOWN); options this engine
 * cannot honour are refused by name, never dropped.
 */
import type { GuestDisk } from './api.ts';
import { openChainMember, type ChainOpenOptions } from './engine/backing.ts';
import { Qcow2Error, UnsupportedError } from './errors.ts';
import { Qcow2Image } from './image.ts';
import {
  BlkdebugDevice,
  parseBlkdebugName,
  parseRule,
  readConfigFile,
  type RuleOptions,
} from './io/blkdebug.ts';
import { limitsOf, withBlkdebugLimits } from './io/blkdebug-filter.ts';
import { withCompression } from './io/compress-filter.ts';
import { FileDevice, hostPath, type BlockDevice } from './io/device.ts';
import { fileProtocolError, isFileProtocol } from './io/file-protocols.ts';
import { openNbd } from './io/nbd-options.ts';
import { DiskDevice, NullDevice, QuorumDevice, RawNodeDevice } from './io/node-devices.ts';
import { REQUESTS } from './io/lock.ts';
import { RawImage } from './raw.ts';

export type FlatOptions = Map<string, string>;

/** QEMU's `json:` pseudo-protocol (block.c parse_json_filename), flattened with dots. */
export function parseJsonOptions(name: string): FlatOptions {
  let obj: unknown;
  try {
    // QEMU's JSON parser also takes single-quoted strings.
    obj = JSON.parse(name.slice(5).replace(/'/g, '"'));
  } catch {
    throw new Qcow2Error('BAD_JSON', 'Could not parse the JSON options', { name });
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new Qcow2Error('BAD_JSON', 'Invalid JSON object given', { name });
  }
  const flat: FlatOptions = new Map();
  const walk = (v: unknown, prefix: string): void => {
    if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, prefix ? `${prefix}.${k}` : k);
    } else flat.set(prefix, String(v));
  };
  walk(obj, '');
  return flat;
}

/** The options under `prefix.` (without it). */
export function subOptions(o: FlatOptions, prefix: string): FlatOptions {
  return sub(o, prefix);
}

function sub(o: FlatOptions, prefix: string): FlatOptions {
  const out: FlatOptions = new Map();
  for (const [k, v] of o) if (k.startsWith(`${prefix}.`)) out.set(k.slice(prefix.length + 1), v);
  return out;
}

/** A child given as a string names a file (QEMU also takes a node name there: not modelled). */
function child(o: FlatOptions, key: string): FlatOptions | undefined {
  const s = o.get(key);
  if (s !== undefined) return new Map([['filename', s]]);
  const c = sub(o, key);
  return c.size ? c : undefined;
}

/** The keys of a file-posix node (file, host_device, host_cdrom). */
const FILE_KEYS = ['driver', 'filename', 'locking', 'aio', 'node-name', 'cache.direct'];

/**
 * The backing options of a qcow2 node this engine honours: the backing file's format, its file
 * name over the header's, its secret, and `backing: null` (no backing file). A backing node tree
 * beyond these (blkdebug under the backing file, ...) is refused by name.
 */
const BACKING_KEYS = [
  'backing',
  'backing.driver',
  'backing.filename',
  'backing.file.filename',
  'backing.file.driver',
  'backing.encrypt.key-secret',
  'backing.node-name', // node names: only compared by qemu-io's reopen (io-reopen.ts)
  'backing.file.node-name',
];

/** Keys a node's driver reads (the rest is refused by name). */
const KNOWN: Record<string, (k: string) => boolean> = {
  qcow2: (k) =>
    [
      'driver',
      'filename',
      'read-only',
      'force-share',
      'l2-cache-size',
      'refcount-cache-size',
      'l2-cache-entry-size',
      'cache-clean-interval',
      'cache-size',
      'encrypt.key-secret',
      'node-name',
      'discard',
      'cache.direct',
      'cache.no-flush',
    ].includes(k) || BACKING_KEYS.includes(k),
  raw: (k) => ['driver', 'filename', 'read-only', 'node-name', 'force-share'].includes(k),
  file: (k) => FILE_KEYS.includes(k),
  host_device: (k) => FILE_KEYS.includes(k),
  host_cdrom: (k) => FILE_KEYS.includes(k),
  blkdebug: (k) =>
    [
      'driver',
      'filename',
      'config',
      'x-image',
      'align',
      'max-transfer',
      'opt-write-zero',
      'max-write-zero',
      'opt-discard',
      'max-discard',
      'node-name',
    ].includes(k) || /^(inject-error|set-state)\.\d+\.[\w-]+$/.test(k),
  quorum: (k) => ['driver', 'vote-threshold', 'node-name'].includes(k),
  'null-co': (k) => ['driver', 'size', 'read-zeroes', 'latency-ns', 'node-name'].includes(k),
  nbd: (k) =>
    ['driver', 'export', 'reconnect-delay', 'node-name', 'read-only'].includes(k) ||
    /^server\.(type|path|host|port)$/.test(k),
  compress: (k) => ['driver', 'node-name'].includes(k),
};

function checkKeys(o: FlatOptions, driver: string, children: string[]): void {
  const known = KNOWN[driver];
  if (!known) throw new Qcow2Error('UNKNOWN_DRIVER', `Unknown driver '${driver}'`, { driver });
  for (const k of o.keys()) {
    if (children.some((c) => k === c || k.startsWith(`${c}.`)) || known(k)) continue;
    throw new UnsupportedError('UNSUPPORTED', `Block option '${k}' is not supported by this engine`, {
      key: k,
    });
  }
}

const FORMATS = new Set(['qcow2', 'raw']);

export interface TreeOpenOptions extends ChainOpenOptions {
  /** The name the user gave (messages); defaults to the innermost file's name. */
  name?: string;
  /** `--object secret,id=...` objects, which `encrypt.key-secret=ID` options name. */
  secrets?: ReadonlyMap<string, Uint8Array>;
}

/** The secret an `...encrypt.key-secret` option names (QEMU: "No secret with id"). */
function secretOf(id: string | undefined, opts: TreeOpenOptions): Uint8Array | undefined {
  // Without secret objects (a json: backing name met in a chain) the caller's secret stands.
  if (id === undefined || opts.secrets === undefined) return undefined;
  const s = opts.secrets.get(id);
  // An open for metadata alone (qemu-img info) needs no secret, as QEMU's.
  if (s === undefined && !opts.noIo)
    throw new Qcow2Error('MISSING_SECRET', `No secret with id '${id}'`, { id });
  return s;
}

/** A format driver name of a node option: one this engine opens, else QEMU's "Unknown driver". */
function formatName(d: string | undefined): 'qcow2' | 'raw' | undefined {
  if (d === undefined || FORMATS.has(d)) return d as 'qcow2' | 'raw' | undefined;
  throw new Qcow2Error('UNKNOWN_DRIVER', `Unknown driver '${d}'`, { driver: d });
}

/**
 * A format node's own options that go to the image open: its secret and its backing file's
 * (format, file name, secret), or no backing file at all (`backing: null`).
 */
function imageOptions(o: FlatOptions, opts: TreeOpenOptions): TreeOpenOptions {
  const out: TreeOpenOptions = { ...opts };
  const secret = secretOf(o.get('encrypt.key-secret'), opts);
  if (secret !== undefined) out.secret = secret;
  const backing = o.get('backing');
  if (backing !== undefined) {
    // A backing node given by name (a string other than null) is not modelled.
    if (backing !== 'null')
      throw new UnsupportedError('UNSUPPORTED', "Block option 'backing' is not supported by this engine", {
        key: 'backing',
      });
    out.openBacking = false;
  }
  return { ...out, ...backingOf(o, opts) };
}

/**
 * A qcow2 node's backing file options (`backing.driver`, `backing.file.filename`,
 * `backing.encrypt.key-secret`) as the image open takes them; qemu-img commit opens that backing
 * file with them too.
 */
export function backingOf(
  o: FlatOptions,
  opts: Pick<TreeOpenOptions, 'secrets' | 'noIo'>,
): Pick<ChainOpenOptions, 'backingFormat' | 'backingFilename' | 'backingSecret'> {
  const out: Pick<ChainOpenOptions, 'backingFormat' | 'backingFilename' | 'backingSecret'> = {};
  const bDriver = o.get('backing.file.driver');
  if (bDriver !== undefined && bDriver !== 'file')
    throw new UnsupportedError(
      'UNSUPPORTED',
      "Block option 'backing.file.driver' is not supported by this engine",
      {
        key: 'backing.file.driver',
      },
    );
  const format = formatName(o.get('backing.driver'));
  if (format !== undefined) out.backingFormat = format;
  const filename = o.get('backing.file.filename') ?? o.get('backing.filename');
  if (filename !== undefined) out.backingFilename = filename;
  const bSecret = secretOf(o.get('backing.encrypt.key-secret'), opts);
  if (bSecret !== undefined) out.backingSecret = bSecret;
  return out;
}

/** file / host_device / host_cdrom given by name: the kind of file is checked, as file-posix does. */
function checkFileKind(p: FlatOptions, readOnly: boolean): void {
  const driver = p.get('driver');
  if (!isFileProtocol(driver)) return;
  const file = p.get('filename') ?? '';
  const why = fileProtocolError(driver, file, readOnly);
  if (why !== undefined) throw new Qcow2Error('WRONG_FILE_KIND', why, { driver, filename: file });
}

/** The innermost file a node tree stands on (backing and data file names resolve from it). */
function innermostFile(o: FlatOptions): string | undefined {
  const f = o.get('filename');
  if (f !== undefined) return f.startsWith('blkdebug:') ? parseBlkdebugName(f).image : f;
  for (const c of ['file', 'image', 'x-image']) {
    const ch = child(o, c);
    if (ch) return innermostFile(ch);
  }
  return undefined;
}

/**
 * Opens the node tree as a guest disk. A node without a driver but with a file name (or a file
 * child) is a format node whose format is `opts.format` or probed, as QEMU probes.
 */
export function openTree(o: FlatOptions, opts: TreeOpenOptions): GuestDisk {
  let driver = o.get('driver');
  const filename = o.get('filename');
  if (driver === undefined && filename?.startsWith('blkdebug:') && o.size === 1) {
    return openTree(new Map([['file.filename', filename]]), opts);
  }
  if (driver === 'blkdebug') {
    // A blkdebug node above a format node (`image.driver=qcow2`): a filter whose limits
    // (align, max-transfer, ...) split requests but never change what they do.
    const image = blkdebugImage(o);
    checkKeys(o, 'blkdebug', ['image']);
    if (image.get('driver') !== undefined && FORMATS.has(image.get('driver')!)) {
      return withBlkdebugLimits(openTree(image, opts), limitsOf(o));
    }
    return formatOver(o, opts.format, opts);
  }
  if (driver === 'compress') {
    // a filter over a format node: every write compressed (io/compress-filter.ts)
    checkKeys(o, 'compress', ['file']);
    const f = child(o, 'file');
    if (!f) throw new Qcow2Error('BAD_JSON', 'A block device must be specified for "file"', {});
    return withCompression(openTree(f, opts));
  }
  // A protocol node at the top is read as a raw disk (QEMU puts no format node over it).
  if (driver === 'null-co' || driver === 'nbd' || isFileProtocol(driver)) return formatOver(o, 'raw', opts);
  if (driver === undefined) {
    if (filename === undefined && !child(o, 'file'))
      throw new Qcow2Error('BAD_JSON', 'A block device must be specified for "file"', {});
    driver = opts.format;
  }
  const format = formatName(driver);
  checkKeys(o, format ?? 'qcow2', ['file', 'data-file']);
  const fileOpts = child(o, 'file') ?? new Map([['filename', filename ?? '']]);
  // A file name beside `file.*` options names the file node (bdrv_fill_options), as in qemu-io's
  // `open -o driver=qcow2,file.align=4k blkdebug::IMG` (iotests 033, 268).
  if (filename !== undefined && !fileOpts.has('filename') && !fileOpts.has('driver'))
    fileOpts.set('filename', filename);
  return formatOver(fileOpts, format, imageOptions(o, opts), o);
}

/** blkdebug's `image` child, or the image named by a `blkdebug:CONFIG:FILE` filename. */
function blkdebugImage(o: FlatOptions): FlatOptions {
  const image = child(o, 'image') ?? child(o, 'x-image') ?? new Map<string, string>();
  const f = o.get('filename');
  // The file of `blkdebug:CONFIG:FILE` is the image's file name (QEMU's x-image option); a plain
  // file name given to the blkdebug node goes down to its image.
  if (f !== undefined && !image.has('filename') && !image.has('file') && !child(image, 'file'))
    image.set('filename', f.startsWith('blkdebug:') ? parseBlkdebugName(f).image : f);
  if (image.size) return image;
  throw new Qcow2Error('BAD_JSON', 'A block device must be specified for "image"', {});
}

/** A format node of `format` (probed when undefined) over the protocol node `p`. */
function formatOver(
  p: FlatOptions,
  format: 'qcow2' | 'raw' | undefined,
  opts: TreeOpenOptions,
  fmtNode: FlatOptions = new Map(),
): GuestDisk {
  const pDriver = p.get('driver') ?? (p.get('filename')?.startsWith('blkdebug:') ? 'blkdebug' : 'file');
  const file = innermostFile(p) ?? '';
  const name = opts.name ?? file;
  // The plain case (a file under a format) keeps the engine's own open: chains, probing, locks.
  if (pDriver === 'file') {
    checkKeys(p, 'file', []);
    checkFileKind(p, opts.readOnly ?? false);
    const dataFile = child(fmtNode, 'data-file');
    if (!dataFile) {
      return openChainMember(
        p.get('filename') ?? '',
        { ...opts, format, locking: lockingOf(p, opts) },
        (d, o) => Qcow2Image.openDevice(d, o),
      );
    }
  }
  const readOnly = opts.readOnly ?? false;
  const dev = openProtocol(p, { ...opts, readOnly });
  try {
    const fmt = format ?? probeDevice(dev);
    if (fmt === 'raw') return new RawImage(dev, { filename: name, readOnly });
    const data = child(fmtNode, 'data-file');
    const dataDevice = data ? openProtocol(data, { ...opts, readOnly }) : undefined;
    return Qcow2Image.openDevice(dev, { ...opts, readOnly, filename: file, dataDevice });
  } catch (e) {
    dev.close();
    throw e;
  }
}

function lockingOf(p: FlatOptions, opts: ChainOpenOptions): ChainOpenOptions['locking'] {
  const l = p.get('locking');
  return l === 'on' || l === 'off' || l === 'auto' ? l : opts.locking;
}

/** 'qcow2' when the device starts with the qcow2 magic, else 'raw'. */
function probeDevice(dev: BlockDevice): 'qcow2' | 'raw' {
  const b = new Uint8Array(8);
  dev.read(b, 0);
  const magic = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  const version = ((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[3 + 4]!) >>> 0;
  return magic === 0x514649fb && version >= 2 ? 'qcow2' : 'raw';
}

/** A protocol node (or a format node used as one) as a block device. */
export function openProtocol(o: FlatOptions, opts: TreeOpenOptions & { readOnly: boolean }): BlockDevice {
  const filename = o.get('filename');
  const driver = o.get('driver') ?? (filename?.startsWith('blkdebug:') ? 'blkdebug' : 'file');
  switch (driver) {
    case 'file':
    case 'host_device':
    case 'host_cdrom': {
      checkKeys(o, driver, []);
      checkFileKind(o, opts.readOnly);
      const l = lockingOf(o, opts);
      return FileDevice.open(filename ?? '', {
        readOnly: opts.readOnly,
        sync: opts.sync ?? true,
        lock: REQUESTS.qcow2(opts.readOnly, opts.noIo),
        lockOptions: l === undefined ? undefined : { locking: l },
      });
    }
    case 'blkdebug': {
      checkKeys(o, 'blkdebug', ['image']);
      let config = o.get('config');
      if (filename?.startsWith('blkdebug:')) {
        const n = parseBlkdebugName(filename);
        if (config === undefined && n.config !== '') config = n.config;
      }
      const image = blkdebugImage(o);
      const groups = config === undefined ? [] : readConfigFile(hostPath(config));
      for (const g of ['inject-error', 'set-state']) {
        const list = sub(o, g);
        const idx = new Set([...list.keys()].map((k) => k.split('.')[0]!));
        for (const i of [...idx].sort((a, b) => Number(a) - Number(b))) {
          groups.push({ group: g, options: sub(list, i) as RuleOptions });
        }
      }
      const rules = groups.map((g) => parseRule(g.group, g.options));
      const inner = openProtocol(image, opts);
      return new BlkdebugDevice(inner, rules, filename ?? inner.name);
    }
    case 'nbd': {
      checkKeys(o, 'nbd', []);
      return openNbd(o, opts.readOnly);
    }
    case 'null-co': {
      checkKeys(o, 'null-co', []);
      const size = Number(o.get('size') ?? '1073741824');
      return new NullDevice(size, o.get('read-zeroes') === 'true' || o.get('read-zeroes') === 'on');
    }
    case 'raw': {
      const f = child(o, 'file');
      if (!f) throw new Qcow2Error('BAD_JSON', 'A block device must be specified for "file"', {});
      checkKeys(o, 'raw', ['file']);
      return new RawNodeDevice(openProtocol(f, opts));
    }
    case 'qcow2':
      return new DiskDevice(openTree(o, { ...opts, name: undefined }));
    case 'quorum': {
      checkKeys(o, 'quorum', ['children']);
      const list = sub(o, 'children');
      const idx = [...new Set([...list.keys()].map((k) => k.split('.')[0]!))].sort(
        (a, b) => Number(a) - Number(b),
      );
      const threshold = Number(o.get('vote-threshold') ?? '');
      if (!Number.isInteger(threshold) || threshold < 1 || threshold > idx.length)
        throw new Qcow2Error(
          'INVALID_OPTION',
          'Quorum must have vote-threshold between 1 and the number of children',
          {},
        );
      const children: BlockDevice[] = [];
      try {
        for (const i of idx) children.push(openProtocol(sub(list, i), opts));
      } catch (e) {
        for (const c of children) c.close();
        throw e;
      }
      return new QuorumDevice(children, threshold);
    }
    default:
      throw new Qcow2Error('UNKNOWN_DRIVER', `Unknown driver '${driver}'`, { driver });
  }
}

/** Keys the plain open path (a format over one file) handles without a node tree. */
const PLAIN_KEYS = new Set([
  'driver',
  'filename',
  'file.filename',
  'file.driver',
  'read-only',
  'file.locking',
]);

/**
 * Whether flat options need the node tree (a protocol driver at the top, another driver than
 * qcow2/raw over a file, a backing file's options, or options of nested nodes); the plain path
 * keeps its own option handling (locks, caches, the image's own secret).
 */
export function needsTree(o: FlatOptions): boolean {
  const d = o.get('driver');
  const fd = o.get('file.driver');
  if (d !== undefined && !FORMATS.has(d)) return true;
  if (o.has('backing')) return true;
  if (fd !== undefined && fd !== 'file') return true;
  if (o.get('filename')?.startsWith('blkdebug:') || o.get('file.filename')?.startsWith('blkdebug:'))
    return true;
  return [...o.keys()].some(
    (k) => (k.includes('.') || k === 'data-file') && !PLAIN_KEYS.has(k) && !k.startsWith('encrypt.'),
  );
}

/** Flat options as a `json:{...}` name (nested objects; numeric keys stay object keys, as flattened). */
export function jsonNameOf(o: FlatOptions): string {
  const root: Record<string, unknown> = {};
  for (const [k, v] of o) {
    const parts = k.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) {
      const next = node[p];
      if (typeof next === 'object' && next !== null) node = next as Record<string, unknown>;
      else node = node[p] = {};
    }
    node[parts[parts.length - 1]!] = v;
  }
  return `json:${JSON.stringify(root)}`;
}

/** Keys of a tree QEMU can name by its file alone (bdrv_refresh_filename: no other options). */
const RECONSTRUCTABLE = new Set([
  'driver',
  'filename',
  'file.driver',
  'file.filename',
  'file',
  // qcow2's data-file child does not name the node (bdrv_refresh_filename names it by its file)
  'data-file',
  'data-file.filename',
  'data-file.driver',
]);

/**
 * How qemu-img names a node tree given as `json:{...}`: by its file when nothing but the driver
 * and the file name is set, else as a json: name of its options; and whether the tree has one
 * directory that relative backing names resolve from (bdrv_dirname: a quorum has none).
 */
export function describeTree(name: string, file: string): { shown: string; hasDirname: boolean } {
  const o = parseJsonOptions(name);
  const plain =
    [...o.keys()].every((k) => RECONSTRUCTABLE.has(k)) &&
    ['file', undefined].includes(o.get('file.driver')) &&
    ['file', undefined].includes(o.get('data-file.driver')) &&
    ['qcow2', 'raw', undefined].includes(o.get('driver'));
  const hasDirname = ![...o.entries()].some(
    ([k, v]) => (k === 'driver' || k.endsWith('.driver')) && v === 'quorum',
  );
  return { shown: plain ? file : jsonNameOf(o), hasDirname };
}
