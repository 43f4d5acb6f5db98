/**
 * The block-device interface: the only place bytes meet storage. Synchronous by design: the engine
 * is a library of small metadata operations, and synchronous I/O keeps write ordering explicit.
 */
import * as fs from 'node:fs';
import { nodeErrorText } from './errno.ts';
import { IoError } from '../errors.ts';
import { fileExtent, type FileExtent } from './holes.ts';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, libc } from './libc.ts';
import { REQUESTS, lockFile, type LockOptions, type LockRequest } from './lock.ts';

export interface BlockDevice {
  /** Reads `buf.length` bytes at `offset`; bytes past the end of the device read as zeros. */
  read(buf: Uint8Array, offset: number): void;
  write(buf: Uint8Array, offset: number): void;
  /** Current length in bytes. */
  size(): number;
  truncate(length: number): void;
  /** Make every completed write durable (fsync for files; a barrier for recording devices). */
  flush(): void;
  close(): void;
  readonly readOnly: boolean;
  /** A name for error messages (the path for files). */
  readonly name: string;
  /**
   * Whether the bytes from `offset` (at most `length` of them) are data or a hole of a sparse
   * file, and how far that goes; undefined when the device cannot tell (then: data).
   */
  extent?(offset: number, length: number): FileExtent | undefined;
  /**
   * Bytes the host file system has allocated for the device (st_blocks * 512, as QEMU's
   * bdrv_get_allocated_file_size for file-posix); undefined where that cannot be known.
   */
  allocatedBytes?(): number | undefined;
  /**
   * The same transfers run on libuv's thread pool (requests in flight, engine/aio.ts); the caller
   * keeps `buf` untouched until the promise settles and orders what depends on it.
   */
  readAsync?(buf: Uint8Array, offset: number): Promise<void>;
  writeAsync?(buf: Uint8Array, offset: number): Promise<void>;
  /** preadv/pwritev: `bufs` lie one after another from `offset`. */
  readvAsync?(bufs: Uint8Array[], offset: number): Promise<void>;
  writevAsync?(bufs: Uint8Array[], offset: number): Promise<void>;
  /**
   * Reserve the bytes [offset, offset + length) on disk, reading as zeros, the file growing to
   * cover them (fallocate mode 0: QEMU's preallocation=falloc). Devices without it: callers write
   * zeros instead.
   */
  allocate?(offset: number, length: number): void;
  /**
   * A debug event the format above raises (QEMU's BLKDBG_EVENT names: `l1_update`, `write_aio`,
   * ...); only fault-injecting devices (io/blkdebug.ts) act on it.
   */
  event?(name: string): void;
  /**
   * Deallocate a range so that it reads as zeros (a hole punched in a file, as QEMU's file driver
   * discards); absent or a no-op where the device cannot.
   */
  discard?(offset: number, length: number): void;
}

function ioError(op: string, name: string, e: unknown, offset?: number): IoError {
  const err = e as NodeJS.ErrnoException;
  const where = offset === undefined ? '' : ` at offset ${offset}`;
  return new IoError(
    `EIO_${op.toUpperCase() as Uppercase<string>}`,
    `${op} failed on '${name}'${where}: ${err.message}`,
    {
      path: name,
      op,
      offset,
      errno: err.code,
    },
  );
}

export class FileDevice implements BlockDevice {
  private fd: number;
  private length: number;
  /**
   * The file on disk is shorter than `length`: growing truncates are deferred to the next flush or
   * close (bytes past the end of a file read as zeros either way, and a write past it extends it).
   * A cluster allocated past the end of the image costs no ftruncate per cluster, as QEMU's
   * fallocate per allocation would; a flush, the durability point, makes the size real.
   */
  private growPending = false;
  readonly readOnly: boolean;
  readonly name: string;
  /** fsync on flush(); off for scratch images in tests and benchmarks (QEMU's cache=unsafe). */
  private sync: boolean;
  /**
   * Changes made through this descriptor (QEMU's write_gen, block/io.c): bumped by every write,
   * ftruncate, fallocate and hole punch — data and file metadata an fdatasync must carry.
   * `flushedGen` is the generation the last successful fdatasync covered; a flush with nothing new
   * since then skips the syscall, as bdrv_co_flush does. A failed fdatasync leaves it as it was.
   */
  private writeGen = 0;
  private flushedGen = 0;

  private constructor(fd: number, name: string, readOnly: boolean, sync: boolean, dirty = false) {
    this.fd = fd;
    this.name = name;
    this.readOnly = readOnly;
    this.sync = sync;
    this.length = fs.fstatSync(fd).size;
    // A file just created or emptied (create()): its new size is metadata the first flush syncs.
    if (dirty) this.writeGen = 1;
  }

  /**
   * `lock`: the permissions QEMU would take on this file (lock.ts; a qcow2 image's by default), or
   * false for none; `lockOptions` overrides the ambient ones (withLockOptions: -U, locking=off).
   */
  static open(
    path: string,
    opts: { readOnly?: boolean; sync?: boolean; lock?: LockRequest | false; lockOptions?: LockOptions } = {},
  ): FileDevice {
    const readOnly = opts.readOnly ?? false;
    let fd: number;
    try {
      fd = fs.openSync(hostPath(path), readOnly ? 'r' : 'r+');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const code = err.code === 'ENOENT' ? 'ENOENT' : err.code === 'EACCES' ? 'EACCES' : 'EOPEN';
      throw new IoError(code, `Could not open '${path}': ${nodeErrorText(err)}`, { path, errno: err.code });
    }
    try {
      if (fs.fstatSync(fd).isDirectory())
        throw new IoError('EISDIR', `Could not open '${path}': Is a directory`, { path });
      if (opts.lock !== false) lockFile(fd, path, opts.lock ?? REQUESTS.qcow2(readOnly), opts.lockOptions);
    } catch (e) {
      fs.closeSync(fd); // drops any lock already placed
      throw e;
    }
    return new FileDevice(fd, path, readOnly, opts.sync ?? true);
  }

  /**
   * Creates or empties `path`. As QEMU's raw_co_create: opened without O_TRUNC, locked, and only
   * then truncated, so an image another process holds is refused rather than emptied under it;
   * then held as a writable qcow2 image is (or with `lock`).
   */
  static create(path: string, opts: { sync?: boolean; lock?: LockRequest | false } = {}): FileDevice {
    let fd: number;
    try {
      fd = fs.openSync(hostPath(path), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new IoError(
        (err.code as `E${Uppercase<string>}` | undefined) ?? 'ECREATE',
        `Could not create '${path}': ${nodeErrorText(err)}`,
        { path },
      );
    }
    try {
      if (opts.lock !== false) lockFile(fd, path, REQUESTS.create());
      fs.ftruncateSync(fd, 0);
      if (opts.lock !== false) lockFile(fd, path, opts.lock ?? REQUESTS.qcow2(false));
    } catch (e) {
      fs.closeSync(fd);
      if (e instanceof IoError) throw e;
      throw ioError('truncate', path, e, 0);
    }
    return new FileDevice(fd, path, false, opts.sync ?? true, true);
  }

  read(buf: Uint8Array, offset: number): void {
    let done = 0;
    try {
      while (done < buf.length) {
        const n = fs.readSync(this.fd, buf, done, buf.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw ioError('read', this.name, e, offset);
    }
    if (done < buf.length) buf.fill(0, done);
  }

  write(buf: Uint8Array, offset: number): void {
    if (this.readOnly) throw new IoError('EROFS', `'${this.name}' is open read-only`, { path: this.name });
    let done = 0;
    this.writeGen++; // before the syscall: a write that fails part-way may still have landed
    try {
      while (done < buf.length) done += fs.writeSync(this.fd, buf, done, buf.length - done, offset + done);
    } catch (e) {
      throw ioError('write', this.name, e, offset);
    }
    if (offset + buf.length > this.length) this.length = offset + buf.length;
  }

  /** preadv of adjacent buffers, synchronously (merged requests, engine/aio.ts). */
  readvSync(bufs: Uint8Array[], offset: number): void {
    let rest = bufs;
    let at = offset;
    try {
      while (rest.length > 0) {
        const n = fs.readvSync(this.fd, rest, at);
        if (n === 0) {
          for (const b of rest) b.fill(0); // past the end of the file: zeros, as read()
          return;
        }
        rest = advance(rest, n);
        at += n;
      }
    } catch (e) {
      throw ioError('read', this.name, e, at);
    }
  }

  /** pwritev of adjacent buffers, synchronously (merged requests, engine/aio.ts). */
  writevSync(bufs: Uint8Array[], offset: number): void {
    if (this.readOnly) throw new IoError('EROFS', `'${this.name}' is open read-only`, { path: this.name });
    let rest = bufs;
    let at = offset;
    this.writeGen++;
    try {
      while (rest.length > 0) {
        const n = fs.writevSync(this.fd, rest, at);
        rest = advance(rest, n);
        at += n;
      }
    } catch (e) {
      throw ioError('write', this.name, e, at);
    }
    if (at > this.length) this.length = at;
  }

  readAsync(buf: Uint8Array, offset: number): Promise<void> {
    return this.readvAsync([buf], offset);
  }

  writeAsync(buf: Uint8Array, offset: number): Promise<void> {
    return this.writevAsync([buf], offset);
  }

  /** preadv of adjacent buffers (requests merged, engine/aio.ts); past the end reads as zeros. */
  readvAsync(bufs: Uint8Array[], offset: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const step = (rest: Uint8Array[], at: number): void => {
        if (rest.length === 0) return resolve();
        fs.readv(this.fd, rest, at, (e, n) => {
          if (e) return reject(ioError('read', this.name, e, at));
          if (n === 0) {
            for (const b of rest) b.fill(0); // past the end of the file: zeros, as read()
            return resolve();
          }
          step(advance(rest, n), at + n);
        });
      };
      step(bufs, offset);
    });
  }

  /** pwritev of adjacent buffers (requests merged, engine/aio.ts). */
  writevAsync(bufs: Uint8Array[], offset: number): Promise<void> {
    if (this.readOnly)
      return Promise.reject(new IoError('EROFS', `'${this.name}' is open read-only`, { path: this.name }));
    let total = 0;
    for (const b of bufs) total += b.length;
    // The length counts the write at once, as write() does: allocation past the end sees it.
    if (offset + total > this.length) this.length = offset + total;
    this.writeGen++;
    return new Promise((resolve, reject) => {
      const step = (rest: Uint8Array[], at: number): void => {
        if (rest.length === 0) return resolve();
        fs.writev(this.fd, rest, at, (e, n) => {
          // Bumped again once the bytes landed: a flush that ran while this write was in flight
          // (on the thread pool) covered the generation, not these bytes.
          this.writeGen++;
          if (e) return reject(ioError('write', this.name, e, at));
          step(advance(rest, n), at + n);
        });
      };
      step(bufs, offset);
    });
  }

  size(): number {
    return this.length;
  }

  extent(offset: number, length: number): FileExtent | undefined {
    return fileExtent(this.fd, offset, length, this.length);
  }

  allocatedBytes(): number | undefined {
    try {
      return fs.fstatSync(this.fd).blocks * 512;
    } catch {
      return undefined;
    }
  }

  allocate(offset: number, length: number): void {
    if (this.readOnly) throw new IoError('EROFS', `'${this.name}' is open read-only`, { path: this.name });
    if (length <= 0) return;
    this.settleLength();
    this.writeGen++; // fallocate changes the file's size and block map: metadata fdatasync syncs
    const c = libc();
    if (!c || c.fallocate(this.fd, 0, offset, length) !== 0) {
      // No fallocate (or a file system that refuses it): zeros, as posix_fallocate would write.
      const zeros = new Uint8Array(Math.min(length, 1 << 20));
      for (let done = 0; done < length; done += zeros.length)
        this.write(zeros.subarray(0, Math.min(zeros.length, length - done)), offset + done);
    }
    this.length = Math.max(this.length, offset + length);
  }

  /** FALLOC_FL_PUNCH_HOLE | KEEP_SIZE (raw_co_pdiscard); where it is refused, nothing happens. */
  discard(offset: number, length: number): void {
    if (this.readOnly) throw new IoError('EROFS', `'${this.name}' is open read-only`, { path: this.name });
    const end = Math.min(offset + length, this.length);
    if (end <= offset) return;
    this.writeGen++;
    libc()?.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, end - offset);
  }

  truncate(length: number): void {
    if (this.readOnly) throw new IoError('EROFS', `'${this.name}' is open read-only`, { path: this.name });
    if (length > this.length) {
      this.length = length;
      this.growPending = true;
      return;
    }
    this.writeGen++; // the size is metadata fdatasync must sync
    try {
      fs.ftruncateSync(this.fd, length);
    } catch (e) {
      throw ioError('truncate', this.name, e, length);
    }
    this.length = length;
    // Anything pending lay beyond the new end; a later write past the end extends the file.
    this.growPending = false;
  }

  /** Makes a deferred growth real (the file is at least `length` long). */
  private settleLength(): void {
    if (!this.growPending) return;
    this.growPending = false;
    try {
      if (fs.fstatSync(this.fd).size < this.length) {
        this.writeGen++;
        fs.ftruncateSync(this.fd, this.length);
      }
    } catch (e) {
      throw ioError('truncate', this.name, e, this.length);
    }
  }

  /**
   * QEMU's cache=unsafe from now on (flushes ignored): qemu-img convert's target at its default
   * cache, after the image was created durably (qcow2_co_create flushes with its own options).
   */
  ignoreFlushes(): void {
    this.sync = false;
  }

  flush(): void {
    this.settleLength();
    if (this.readOnly || !this.sync) return;
    // Nothing written since the last successful fdatasync: nothing to make durable.
    if (this.writeGen === this.flushedGen) return;
    const gen = this.writeGen;
    try {
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw ioError('flush', this.name, e); // flushedGen unchanged: the next flush tries again
    }
    this.flushedGen = gen;
  }

  close(): void {
    if (this.fd >= 0) {
      try {
        this.settleLength();
      } finally {
        fs.closeSync(this.fd);
      }
      this.fd = -1;
    }
  }
}

/** What is left of `bufs` once the first `n` bytes are done (a short preadv/pwritev). */
function advance(bufs: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i]!.length) n -= bufs[i++]!.length;
  if (i === bufs.length) return [];
  return [bufs[i]!.subarray(n), ...bufs.slice(i + 1)];
}

/** An in-memory device (tests, the harness, scratch images). Grows in chunks. */
export class MemoryDevice implements BlockDevice {
  private buf: Uint8Array;
  private length: number;
  readonly readOnly: boolean;
  readonly name: string;

  constructor(initial?: Uint8Array, opts: { readOnly?: boolean; name?: string } = {}) {
    this.buf = initial ? new Uint8Array(initial) : new Uint8Array(0);
    this.length = this.buf.length;
    this.readOnly = opts.readOnly ?? false;
    this.name = opts.name ?? '<memory>';
  }

  read(buf: Uint8Array, offset: number): void {
    const end = Math.min(offset + buf.length, this.length);
    if (offset < end) {
      buf.set(this.buf.subarray(offset, end));
      buf.fill(0, end - offset);
    } else buf.fill(0);
  }

  write(buf: Uint8Array, offset: number): void {
    if (this.readOnly) throw new IoError('EROFS', `'${this.name}' is read-only`, {});
    const end = offset + buf.length;
    this.ensure(end);
    this.buf.set(buf, offset);
    if (end > this.length) this.length = end;
  }

  private ensure(n: number): void {
    if (n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(n, this.buf.length * 2, 1 << 16));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  size(): number {
    return this.length;
  }

  truncate(length: number): void {
    this.ensure(length);
    if (length < this.length) this.buf.fill(0, length, this.length);
    this.length = length;
  }

  flush(): void {}
  close(): void {}

  /** A copy of the current contents. */
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/**
 * The host file a name stands for: QEMU's `file:` protocol prefix names the file driver
 * explicitly (`file:a:b.qcow2` is the file "a:b.qcow2").
 */
export function hostPath(name: string): string {
  return name.startsWith('file:') ? name.slice(5) : name;
}
