/**
 * QEMU's image locking (block/file-posix.c of QEMU 7.2: raw_apply_lock_bytes,
 * raw_check_lock_bytes), so that qcow2 and QEMU exclude each other exactly as two QEMU processes
 * do.
 *
 * Each open file holds shared (F_RDLCK) open-file-description byte-range locks, one byte per
 * permission bit:
 * - byte 100 + bit for every permission it takes ("locked perm");
 * - byte 200 + bit for every permission it does not share with other users.
 * Opening first places its own bytes, then tests the others': a permission we take conflicts
 * with someone's byte 200 + bit (they do not share it: `Failed to get "write" lock`), and one we
 * do not share conflicts with someone's byte 100 + bit (they hold it: `Failed to get shared
 * "write" lock`). A test is F_OFD_GETLK with F_WRLCK, which sees every lock but those of our own
 * open file description. OFD locks belong to the open file description: closing the fd, exiting
 * or being killed releases them, and two opens in one process are two users, as in QEMU.
 *
 * The permissions each kind of file takes are QEMU's, read off /proc/locks and strace of
 * qemu-io/qemu-img 7.2 (see REQUESTS). Where fcntl cannot be called (koffi missing, not Linux)
 * or the file system refuses OFD locks, locking=auto opens without locks; locking=on fails.
 */
import { IoError } from '../errors.ts';
import { EINVAL, F_OFD_GETLK, F_OFD_SETLK, F_RDLCK, F_UNLCK, F_WRLCK, SEEK_SET, libc } from './libc.ts';

/** QEMU's permission bits (include/block/block-common.h, BLK_PERM_*). */
export const PERM_CONSISTENT_READ = 0x01;
export const PERM_WRITE = 0x02;
export const PERM_WRITE_UNCHANGED = 0x04;
export const PERM_RESIZE = 0x08;
export const PERM_ALL = 0x0f;

const PERM_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'];

/** Lock byte offsets (file-posix.c RAW_LOCK_PERM_BASE, RAW_LOCK_SHARED_BASE). */
export const LOCK_PERM_BASE = 100;
export const LOCK_SHARED_BASE = 200;

/** What an open file takes (`perm`) and lets others take (`shared`), as QEMU bitmasks. */
export interface LockRequest {
  perm: number;
  shared: number;
}

export type LockingMode = 'auto' | 'on' | 'off';

export interface LockOptions {
  /** qemu-img/qemu-io -U, force-share=on: share every permission (read-only opens only). */
  forceShare?: boolean;
  /** file.locking in --image-opts. */
  locking?: LockingMode;
}

/** The permissions QEMU 7.2's processes take on each kind of file. */
export const REQUESTS = {
  /**
   * A qcow2 image: the format driver never shares write or resize of its file, even read-only
   * (its metadata must not change under it). qemu-img info (no guest I/O) takes no permission.
   */
  qcow2(readOnly: boolean, noIo = false): LockRequest {
    const perm = noIo ? 0 : readOnly ? PERM_CONSISTENT_READ : PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE;
    return { perm, shared: PERM_ALL & ~(PERM_WRITE | PERM_RESIZE) };
  },
  /** A raw image (or raw backing file): the guest's permissions, everything shared. */
  raw(readOnly: boolean, resize = false): LockRequest {
    let perm = PERM_CONSISTENT_READ;
    if (!readOnly) perm |= PERM_WRITE;
    if (resize) perm |= PERM_RESIZE;
    return { perm, shared: PERM_ALL };
  },
  /** An external data file: only its size is not shared (qcow2 metadata does not describe its bytes). */
  dataFile(readOnly: boolean): LockRequest {
    const perm = readOnly ? PERM_CONSISTENT_READ : PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE;
    return { perm, shared: PERM_ALL & ~PERM_RESIZE };
  },
  /** A file being created (file-posix raw_co_create): held before it is truncated. */
  create(): LockRequest {
    return { perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL & ~PERM_RESIZE };
  },
};

let ambient: LockOptions = {};

/**
 * Runs `fn` with `opts` applying to every file it opens that names no options of its own, e.g.
 * the backing files of an image opened with -U (QEMU passes force-share down the chain). The
 * engine opens synchronously, so a dynamic scope is exact.
 */
export function withLockOptions<T>(opts: LockOptions, fn: () => T): T {
  const prev = ambient;
  ambient = { ...prev, ...opts };
  try {
    return fn();
  } finally {
    ambient = prev;
  }
}

/** file.locking / locking option values as QEMU parses them (OnOffAuto). */
export function parseLockingMode(v: string): LockingMode {
  if (v === 'auto' || v === 'on' || v === 'off') return v;
  throw new IoError('BAD_LOCKING_OPTION', `Parameter 'locking' does not accept value '${v}'`, { value: v });
}

/**
 * Takes QEMU's locks for `req` on the open file `fd` under `options` over the ambient ones
 * (withLockOptions); the caller closes the fd, which drops
 * every lock, when this throws). Throws IoError IMAGE_LOCKED on a conflict, with QEMU's message.
 */
export function lockFile(fd: number, name: string, req: LockRequest, options: LockOptions = {}): void {
  const opts = { ...ambient, ...options };
  const mode = opts.locking ?? 'auto';
  if (mode === 'off') return;
  let shared = req.shared;
  if (opts.forceShare) {
    // block.c bdrv_open_common: force-share is only for read-only nodes.
    if (req.perm & PERM_WRITE) {
      throw new IoError('FORCE_SHARE_READ_WRITE', 'force-share=on can only be used with read-only images', {
        path: name,
      });
    }
    shared = PERM_ALL;
  }
  const c = libc();
  if (!c) {
    if (mode === 'on') {
      throw new IoError('LOCKING_UNAVAILABLE', `Cannot lock '${name}': no fcntl on this platform`, {
        path: name,
      });
    }
    return;
  }
  // raw_apply_lock_bytes: our own bytes first, shared locks on one byte each.
  for (let bit = 0; bit < PERM_NAMES.length; bit++) {
    const m = 1 << bit;
    const offsets = [
      (req.perm & m) !== 0 && LOCK_PERM_BASE + bit,
      (shared & m) === 0 && LOCK_SHARED_BASE + bit,
    ];
    for (const off of offsets) {
      if (off === false) continue;
      const l = { l_type: F_RDLCK, l_whence: SEEK_SET, l_start: off, l_len: 1, l_pid: 0 };
      if (c.fcntlLock(fd, F_OFD_SETLK, l) !== 0) {
        const errno = c.errno();
        // A file system without OFD locks: QEMU's locking=auto goes on without them.
        if (errno === EINVAL && mode === 'auto') return;
        throw new IoError('IMAGE_LOCK_FAILED', `Failed to lock byte ${off} of '${name}' (errno ${errno})`, {
          path: name,
          byte: off,
          errno,
        });
      }
    }
  }
  // raw_check_lock_bytes: what we take must be shared by everyone else...
  for (let bit = 0; bit < PERM_NAMES.length; bit++) {
    if (req.perm & (1 << bit) && heldByOthers(fd, LOCK_SHARED_BASE + bit)) throw conflict(name, bit, false);
  }
  // ...and what we do not share must be taken by no one else.
  for (let bit = 0; bit < PERM_NAMES.length; bit++) {
    if (!(shared & (1 << bit)) && heldByOthers(fd, LOCK_PERM_BASE + bit)) throw conflict(name, bit, true);
  }
}

function heldByOthers(fd: number, off: number): boolean {
  const c = libc()!;
  const l = { l_type: F_WRLCK, l_whence: SEEK_SET, l_start: off, l_len: 1, l_pid: 0 };
  if (c.fcntlLock(fd, F_OFD_GETLK, l) !== 0) return false;
  return l.l_type !== F_UNLCK;
}

/** QEMU's error and its hint line (raw_handle_perm_lock) in `data`, for tools that print both. */
function conflict(name: string, bit: number, shared: boolean): IoError {
  const perm = PERM_NAMES[bit]!;
  const reason = `Failed to get ${shared ? 'shared ' : ''}"${perm}" lock`;
  const hint = `Is another process using the image [${name}]?`;
  return new IoError('IMAGE_LOCKED', `${reason}. ${hint}`, {
    path: name,
    permission: perm,
    shared,
    reason,
    hint,
  });
}
