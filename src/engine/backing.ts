/**
 * Backing files (qcow2.txt "backing_file_offset", the backing format extension): how a backing
 * name resolves against the image's name, opening a member of a backing chain (loop and depth
 * limits, format probing), pointing an image at another backing file (`qemu-img rebase -u`) and
 * committing an image into its backing file (`qemu-img commit`).
 *
 * Opening a qcow2 member needs the image facade, which sits above this module: callers pass it in
 * (`OpenQcow2`), so that no module imports the facade from below.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GuestDisk, OpenOptions } from '../api.ts';
import { Qcow2Error } from '../errors.ts';
import { textEncoder } from '../format/bytes.ts';
import * as C from '../format/constants.ts';
import { backingFormat, setExtension } from '../format/header.ts';
import { FileDevice, hostPath, type BlockDevice } from '../io/device.ts';
import { REQUESTS, withLockOptions, type LockOptions } from '../io/lock.ts';
import { RawImage } from '../raw.ts';
import type { ClusterOps } from './cluster-ops.ts';
import { ClusterType } from '../format/tables.ts';
import type { ImageState } from './state.ts';

/** Backing file path as QEMU combines it (path_combine): relative names resolve from the image's directory. */
export function combinePath(base: string, rel: string): string {
  if (path.isAbsolute(rel) || /^[a-z0-9+.-]+:/i.test(rel)) return rel;
  const slash = base.lastIndexOf('/');
  return slash < 0 ? rel : base.slice(0, slash + 1) + rel;
}

/** The absolute path of a file named relative to an image (backing and data files). */
export function resolveBackingPath(imageFilename: string, name: string): string {
  // A node tree (`json:{...}`, `blkdebug:...`) names its files itself.
  if (isTreeName(name)) return name;
  return path.resolve(path.dirname(imageFilename), name);
}

/**
 * The name QEMU gives an image's backing node (bdrv_get_full_backing_filename: path_combine of the
 * image's name and the stored one, not made absolute), which `qemu-img map` prints; a node tree
 * names itself.
 */
export function backingNodeName(imageFilename: string, stored: string): string {
  return isTreeName(stored) ? stored : combinePath(imageFilename, stored);
}

/** Names that stand for a tree of block nodes rather than a file (block-tree.ts). */
export function isTreeName(name: string): boolean {
  return name.startsWith('json:') || name.startsWith('blkdebug:');
}

type TreeOpener = (name: string, opts: ChainOpenOptions) => GuestDisk;
let treeOpener: TreeOpener | undefined;

/**
 * The opener of node-tree names, registered by the layer above the facade (open.ts), so that a
 * backing file named `json:{...}` opens as one without this module importing the facade.
 */
export function registerTreeOpener(fn: TreeOpener): void {
  treeOpener = fn;
}

/** A format name from the backing format extension, when it is one we open. */
export function knownFormat(fmt: string | undefined): 'qcow2' | 'raw' | undefined {
  return fmt === 'raw' || fmt === 'qcow2' ? fmt : undefined;
}

/**
 * The format of a driver named by an image (its backing format extension): qcow2 and raw open;
 * any other name is refused before the file is touched, as QEMU's bdrv_open refuses a driver it
 * does not have ("Unknown driver 'foo'"). Unnamed: undefined (the file is probed).
 */
export function namedDriverFormat(driver: string | undefined): 'qcow2' | 'raw' | undefined {
  if (driver === undefined) return undefined;
  if (driver === 'qcow2' || driver === 'raw') return driver;
  throw new Qcow2Error('UNKNOWN_DRIVER', `Unknown driver '${driver}'`, { driver });
}

export interface ChainOpenOptions {
  format?: 'qcow2' | 'raw';
  /** A driver by the name an image gives it (used when `format` is unset): see namedDriverFormat. */
  driver?: string;
  /** This image's backing file format, over its backing format extension (`backing.driver`). */
  backingFormat?: 'qcow2' | 'raw';
  /** This image's backing file, over the name in its header (`backing.file.filename`). */
  backingFilename?: string;
  /** The backing file's secret (`backing.encrypt.key-secret`). */
  backingSecret?: Uint8Array;
  readOnly?: boolean;
  secret?: Uint8Array;
  sync?: boolean;
  openBacking?: boolean;
  noIo?: boolean;
  /** Runtime cache options (this image only; its backing chain keeps the defaults). */
  cache?: OpenOptions['cache'];
  /** Discard options (unmap flag, pass-discard-*): this image only. */
  discard?: OpenOptions['discard'];
  /** Absolute paths of the images above this one in a backing chain (loop detection). */
  chain?: string[];
  /**
   * QEMU's image locking (io/lock.ts): -U (force-share, passed down to backing files as QEMU
   * does) and file.locking (this file only).
   */
  forceShare?: boolean;
  locking?: LockOptions['locking'];
}

/** How a qcow2 image is opened on a device (the facade's `openDevice`). */
export type OpenQcow2 = (dev: BlockDevice, opts: ChainOpenOptions & { filename: string }) => GuestDisk;

/** 'qcow2' when the file starts with the qcow2 magic, else 'raw' (qemu's probing for our formats). */
export function probeFormat(file: string): 'qcow2' | 'raw' {
  // No lock: a four-byte peek; the open that follows takes the locks for the format it finds.
  const dev = FileDevice.open(file, { readOnly: true, lock: false });
  try {
    const b = new Uint8Array(8);
    dev.read(b, 0);
    const magic = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    const version = ((b[4]! << 24) | (b[5]! << 16) | (b[6]! << 8) | b[7]!) >>> 0;
    // qcow2_probe: the magic and a version of at least 2 (version 1 is the older qcow format).
    return magic === C.QCOW_MAGIC && version >= 2 ? 'qcow2' : 'raw';
  } finally {
    dev.close();
  }
}

/** Open one disk of a backing chain: loop and depth limits, probing, raw or qcow2. */
export function openChainMember(file: string, opts: ChainOpenOptions, openQcow2: OpenQcow2): GuestDisk {
  const open = (): GuestDisk =>
    opts.forceShare === undefined
      ? openLocked(file, opts, openQcow2)
      : withLockOptions({ forceShare: opts.forceShare }, () => openLocked(file, opts, openQcow2));
  if (!opts.chain?.length) return open();
  try {
    return open();
  } catch (e) {
    // A backing file that cannot be opened: QEMU names the layer ("Could not open backing file:
    // ..."), once per level of the chain.
    if (e instanceof Qcow2Error && !/^Backing chain/.test(e.message)) {
      e.message = `Could not open backing file: ${e.message}`;
    }
    throw e;
  }
}

function openLocked(file: string, opts: ChainOpenOptions, openQcow2: OpenQcow2): GuestDisk {
  if (isTreeName(file) && treeOpener) return treeOpener(file, opts);
  const abs = path.resolve(file);
  const chain = opts.chain ?? [];
  if (chain.includes(abs)) {
    throw new Qcow2Error(
      'BACKING_LOOP',
      `Backing chain loops: '${abs}' is its own backing file (${[...chain, abs].join(' -> ')})`,
      { chain: [...chain, abs] },
    );
  }
  if (chain.length >= C.MAX_BACKING_DEPTH) {
    throw new Qcow2Error('BACKING_TOO_DEEP', `Backing chain deeper than ${C.MAX_BACKING_DEPTH} images`, {
      depth: chain.length,
    });
  }
  const named = opts.format ?? namedDriverFormat(opts.driver);
  if (named !== undefined && opts.format === undefined) opts = { ...opts, format: named };
  if (!fs.existsSync(hostPath(file))) {
    throw new Qcow2Error('ENOENT', `Could not open '${file}': No such file or directory`, { path: file });
  }
  const format = opts.format ?? probeFormat(file);
  const readOnly = opts.readOnly ?? false;
  const dev = FileDevice.open(file, {
    readOnly,
    sync: opts.sync ?? true,
    // The permissions QEMU takes on this kind of file; file.locking applies to this file only,
    // force-share is ambient (above) and so reaches the backing chain.
    lock: format === 'raw' ? REQUESTS.raw(readOnly) : REQUESTS.qcow2(readOnly, opts.noIo),
    lockOptions: opts.locking === undefined ? undefined : { locking: opts.locking },
  });
  if (format === 'raw') return new RawImage(dev, { filename: file });
  try {
    return openQcow2(dev, { ...opts, filename: file, chain });
  } catch (e) {
    dev.close();
    throw e;
  }
}

/** Backing-file operations on an open image. */
export class BackingFiles {
  constructor(
    private readonly s: ImageState,
    private readonly ops: ClusterOps,
    private readonly openQcow2: OpenQcow2,
  ) {}

  /** Open the backing chain below this image, read-only. */
  open(
    name: string,
    format: string | undefined,
    opts: { readOnly?: boolean; noIo?: boolean; locking?: ChainOpenOptions['locking'] } = {},
  ): GuestDisk {
    return openChainMember(
      backingNodeName(this.s.filename, name),
      // (a format by name: qcow2 and raw open, any other driver is refused by name)
      {
        driver: format,
        readOnly: opts.readOnly ?? true,
        noIo: opts.noIo,
        chain: [path.resolve(this.s.filename)],
        ...(opts.locking === undefined ? {} : { locking: opts.locking }),
      },
      this.openQcow2,
    );
  }

  /**
   * Point the image at another backing file (or none) without touching guest data: what
   * `qemu-img rebase -u` does. The name is stored as given and resolved from the image's directory.
   */
  set(name: string | undefined, format: string | undefined, mustExist: boolean): void {
    let next: GuestDisk | undefined;
    try {
      next = name === undefined ? undefined : this.open(name, format);
    } catch (e) {
      // `rebase -u` may name a file that does not exist (yet), or one that makes the chain loop
      // (qemu-img writes the name regardless; the loop is refused at the next open).
      if (mustExist) throw e;
    }
    const h = this.s.header;
    h.backingFile = name;
    setExtension(
      h,
      C.EXT_BACKING_FORMAT,
      name !== undefined && format ? textEncoder.encode(format) : undefined,
    );
    this.s.meta.flush();
    this.s.meta.updateHeaderNow(() => {});
    this.s.backing?.close();
    this.s.backing = next;
  }

  /**
   * `qemu-img commit`: write everything this image holds into its backing file (growing it when
   * it is shorter), then empty this image so that the backing file shows through.
   * `read` is the image's guest read.
   */
  commit(read: (offset: number, length: number) => Uint8Array): void {
    const s = this.s;
    const name = s.header.backingFile;
    if (name === undefined)
      throw new Qcow2Error('NO_BACKING', 'Image does not have a backing file', { filename: s.filename });
    const fmt = knownFormat(backingFormat(s.header));
    // This image already holds the backing file (read-only, locked) in this process; QEMU reopens
    // that node read-write for the commit, so the second handle must not lock against the first
    // (as `qcow2 commit` does).
    const base = this.open(name, fmt, { readOnly: false, locking: 'off' });
    try {
      if (base.size < s.size) base.resize(s.size);
      const cs = s.clusterSize;
      const clusters = Math.ceil(s.size / cs);
      for (let c = 0; c < clusters; c++) {
        // Runs this image records nothing for are skipped whole (no L2 table, all-zero entries).
        const skip = s.map.unallocatedRun(c, clusters - c);
        if (skip > 0) {
          c += skip - 1;
          continue;
        }
        const e = s.map.lookup(c);
        // (extended L2: an entry with no cluster type may still hold zeroed subclusters, which
        // read as zeros over the backing file and must reach it; qcow2.txt "Extended L2 Entries")
        if (e.type === ClusterType.Unallocated && e.zeroBitmap === 0 && e.allocBitmap === 0) continue;
        const off = c * cs;
        const len = Math.min(cs, s.size - off);
        if (e.type === ClusterType.ZeroPlain || e.type === ClusterType.ZeroAlloc) base.writeZeroes(off, len);
        else base.write(off, read(off, len));
      }
      base.flush();
    } finally {
      base.close();
    }
    this.ops.makeEmpty();
    // Reopen the backing file: its content changed under us.
    s.backing?.close();
    s.backing = this.open(name, fmt);
  }
}
