/**
 * What the verbs share: the option set every qemu-img verb accepts (-f, -U, --object,
 * --image-opts), opening an image through the engine, and output plumbing (stdout/stderr as
 * strings, so tests can run main() in-process).
 */
import type { GuestDisk, OpenOptions } from '../api.ts';
import { cacheOptionsOf } from './cache-opts.ts';
import { discardOptionsOf } from './discard-opts.ts';
import { Qcow2Image } from '../image.ts';
import { openImage, probeFormat } from '../open.ts';
import { Qcow2Error, UnsupportedError } from '../errors.ts';
import type { LockingMode } from '../io/lock.ts';
import { lockOptionsOf } from './lock-options.ts';
import { combinePath } from '../engine/backing.ts';
import { backingOf, jsonNameOf, needsTree } from '../block-tree.ts';
import { asQemu, program } from './program.ts';
import {
  addSecretObject,
  all,
  last,
  lookupSecret,
  parseFormat,
  parseImageOpts,
  parseOptString,
  UsageError,
  type Parsed,
  type Secrets,
} from './args.ts';

import type { Io } from './stdio.ts';
export { stdio, type Io } from './stdio.ts';

/** qemu-img's error line: "<program>: message". */
export function errLine(io: Io, msg: string): void {
  io.err(`${program()}: ${msg}\n`);
}

export interface Target {
  filename: string;
  format: 'qcow2' | 'raw' | undefined;
  /** -U / force-share=on, file.locking=… (see lock-options.ts). */
  forceShare?: boolean;
  locking?: LockingMode;
  secret: Uint8Array | undefined;
  /** Runtime cache options from --image-opts. */
  cache?: OpenOptions['cache'];
  /** Discard options from --image-opts (discard=, pass-discard-*: discard-opts.ts). */
  discard?: OpenOptions['discard'];
  /** The backing file's own options from --image-opts (backing.driver, .file.filename, .encrypt.key-secret). */
  backing?: {
    format?: 'qcow2' | 'raw';
    filename?: string;
    secret?: Uint8Array;
  };
  /** The secret objects, for a node tree's `encrypt.key-secret` options (block-tree.ts). */
  secrets?: Secrets;
  /** A secret --image-opts named that no --object gave. */
  missingSecretId?: string;
}

/** Secrets from every `--object secret,...`. */
export function secretsOf(p: Parsed): Secrets {
  const secrets: Secrets = new Map();
  for (const spec of all(p, 'object')) addSecretObject(secrets, spec);
  return secrets;
}

/**
 * The image named by the operand, or by it as an --image-opts string. `fmtKey` names the
 * format option ('f' normally, 'F' for compare's second image).
 */
export function targetOf(p: Parsed, operand: string, fmtKey = 'f'): Target {
  const secrets = secretsOf(p);
  if (p.opts.some((o) => o.key === 'image-opts')) {
    if (last(p, fmtKey) !== undefined)
      throw new UsageError('--image-opts and --format are mutually exclusive', false);
    const flat = parseOptString(operand);
    if (needsTree(flat)) {
      // A node tree (block-tree.ts): blkdebug, null-co, a format over a format, a data-file child.
      // The tree resolves its own secrets (encrypt.key-secret, backing.encrypt.key-secret); the
      // top's backing options also serve commit, which opens that backing file for writing.
      const b = backingOf(flat, { secrets, noIo: true });
      return {
        filename: jsonNameOf(flat),
        format: undefined,
        secret: undefined,
        secrets,
        ...lockOptionsOf(p, operand),
        backing: { format: b.backingFormat, filename: b.backingFilename, secret: b.backingSecret },
      };
    }
    const o = parseImageOpts(operand);
    return {
      filename: o.filename,
      format: o.format,
      // A secret named but not given matters only to an open that reads data (openTarget): info
      // opens for metadata alone and needs none, as QEMU's does.
      secret: o.secretId ? secrets.get(o.secretId) : undefined,
      missingSecretId: o.secretId !== undefined && !secrets.has(o.secretId) ? o.secretId : undefined,
      ...lockOptionsOf(p, operand),
      cache: cacheOptionsOf(operand),
      discard: discardOptionsOf(undefined, operand, true),
    };
  }
  // Without --image-opts, a secret can still be named by the only --object given.
  const only = secrets.size === 1 ? [...secrets.values()][0] : undefined;
  return { filename: operand, format: parseFormat(last(p, fmtKey)), secret: only, ...lockOptionsOf(p) };
}

export function openTarget(
  t: Target,
  readOnly: boolean,
  opts: { noIo?: boolean; openBacking?: boolean } = {},
): GuestDisk {
  if (t.missingSecretId !== undefined && !opts.noIo) lookupSecret(new Map(), t.missingSecretId);
  try {
    return openImage(t.filename, {
      format: t.format,
      readOnly,
      secret: t.secret,
      secrets: t.secrets,
      noIo: opts.noIo,
      openBacking: opts.openBacking,
      backingFormat: t.backing?.format,
      backingFilename: t.backing?.filename,
      backingSecret: t.backing?.secret,
      forceShare: t.forceShare,
      locking: t.locking,
      cache: t.cache,
      discard: t.discard,
    });
  } catch (e) {
    throw nameOpenError(e, t.filename);
  }
}

/** qemu-img names the image in every open failure: "Could not open 'F': <reason>". */
export function nameOpenError(e: unknown, filename: string): unknown {
  if (asQemu() && e instanceof Qcow2Error && !e.message.startsWith(`Could not open '${filename}'`)) {
    e.message = `Could not open '${filename}': ${e.message}`;
  }
  return e;
}

export function formatOf(t: Target): 'qcow2' | 'raw' {
  return t.format ?? probeFormat(t.filename);
}

export function isQcow2(d: GuestDisk): d is Qcow2Image {
  return d.format === 'qcow2';
}

/** Backing file path as QEMU combines it (engine/backing.ts: one rule for the engine and the CLI). */
export { combinePath };

/** Close without masking an earlier error. */
export function closeQuietly(d: GuestDisk | undefined): void {
  try {
    d?.close();
  } catch {
    // the original error matters more
  }
}

export function unsupported(what: string): never {
  throw new UnsupportedError('UNSUPPORTED', `${what} is not supported by this engine yet`);
}
