/**
 * The adapter interface: what the harness needs from an implementation under test. Small on
 * purpose: any program speaking qemu-io's command language on stdin plugs in through
 * `StdinProtocolImplementation` (stdin-protocol.ts) with a few lines; an in-process library
 * implements `ImageHandle` directly (engine.ts).
 */
import type { ImageLayout, BackingFormat, CompatLevel, CompressionType, EncryptFormat } from '../layout.ts';
import type { AioHold, AioWrite, WriteSource } from '../steps.ts';

/** What an implementation supports: the layout arbitrary and the command set filter by it. */
export interface Capabilities {
  compat: readonly CompatLevel[];
  clusterBits: { min: number; max: number };
  refcountBits: readonly number[];
  extendedL2: boolean;
  compressionTypes: readonly CompressionType[];
  lazyRefcounts: boolean;
  /** Images with a backing file (qcow2 or raw, created by qemu-img). */
  backingFile: boolean;
  /** Encryption formats (password FUZZ_SECRET); compressed writes are never generated for them. */
  encryption: readonly EncryptFormat[];
  /**
   * Smallest cluster_bits the implementation creates v3 images with a backing file / with
   * encryption in (default: any; qemu-img drops its feature name table when cluster 0 is too small).
   */
  backingMinClusterBits?: number;
  encryptMinClusterBits?: number;
  compressedWrite: boolean;
  snapshots: boolean;
  resize: boolean;
  /**
   * Keeps persistent dirty bitmaps as QEMU 7.2 does (docs/bitmaps.md): layouts get bitmaps, the
   * bitmap commands join the set, the bitmap oracle reads the bits (absent: false).
   */
  bitmaps?: boolean;
  /** The implementation involves QEMU (qemu-io/mixed) (informational: known bugs are matched by signature). */
  involvesQemu: boolean;
  /** Declared behaviour: a revert raises the snapshot tree's refcounts first (may refuse with narrow widths). */
  revertRaisesRefcountsFirst?: boolean;
  /** Declared behaviour: growing a v2 image over a longer backing file is refused. */
  v2GrowOverLongerBackingRefused?: boolean;
  /** The VM-state area (`write -b` / `read -b`, saved with snapshots). */
  vmState?: boolean;
  /** `qemu-img amend` on the closed image. */
  amend?: boolean;
  /**
   * `aio_write` batches in flight together, then `aio_flush` (`ImageHandle.aioWriteBatch`);
   * overlapping requests may land in any serial order (absent: false).
   */
  aioWrite?: boolean;
  /** `rebase [-u]` and `commit` of an image with a backing file (`ImageHandle.rebase/commit`; absent: false). */
  rebaseCommit?: boolean;
}

/** A read that did not match: the first differing guest byte and the bytes read around it. */
export interface ReadMismatch {
  /** Guest offset of the first differing byte. */
  offset: number;
  /** What the image returned, starting at guest `observedAt` (covers `offset`). */
  observed: Uint8Array;
  observedAt: number;
}

/** An operation the implementation reported as failed (or that threw). */
export class ImplementationError extends Error {
  readonly operation: string;
  readonly detail: string;
  constructor(operation: string, detail: string) {
    super(`${operation}: ${detail}`);
    this.name = 'ImplementationError';
    this.operation = operation;
    this.detail = detail;
  }
}

/**
 * One image, driven by one implementation for a whole sequence. Data operations need the image
 * open; `close`/`open` bracket moments when other tools (qemu-img, a qemu-io turn) use the file.
 * Failures throw `ImplementationError`.
 */
export interface ImageHandle {
  readonly path: string;
  readonly isOpen: boolean;
  /**
   * Commands are sent at once and answered in order (a process on a pipe): the runner may send a
   * step's data operations without waiting for each reply, and reports a failure at its own step
   * when it settles them (runner/run-context.ts). Absent: each call completes before it returns.
   */
  readonly pipelined?: boolean;
  /**
   * Done with a write's data when the call returns (keeps no reference to it, sends nothing
   * later): the runner may hand it one buffer, refilled for every write (runner/execute-step.ts).
   */
  readonly borrowsWriteData?: boolean;
  open(): Promise<void>;
  close(): Promise<void>;
  /** Close for good and release processes; idempotent. */
  dispose(): Promise<void>;

  /** Write `data` (the bytes of `source`: a `-P` pattern or a stamped write's file). */
  write(offset: number, data: Uint8Array, source: WriteSource): Promise<void>;
  writeZeroes(offset: number, length: number, unmap: boolean): Promise<void>;
  writeCompressed(offset: number, data: Uint8Array, source: WriteSource): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  /** Compare the image with the exact expected bytes at `offset`; undefined when all match. */
  verify(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined>;
  /** The image's bytes (to explain a mismatch). */
  read(offset: number, length: number): Promise<Uint8Array>;
  flush(): Promise<void>;
  resize(newSize: number): Promise<void>;

  /** Snapshot operations; the handle may close and reopen around them (qemu-img). */
  snapshotCreate(name: string): Promise<void>;
  snapshotApply(name: string): Promise<void>;
  snapshotDelete(name: string): Promise<void>;

  /**
   * `aio_write -P` requests all in flight, then `aio_flush` (capability `aioWrite`); `hold`: hold
   * the first request reaching that blkdebug event until all are submitted, where supported.
   */
  aioWriteBatch?(writes: readonly AioWrite[], hold?: AioHold): Promise<void>;
  /**
   * `qemu-img rebase [-u] -b NAME -F FMT` (NAME null: no backing file); NAME is relative to the
   * image's directory (capability `rebaseCommit`).
   */
  rebase?(name: string | null, format: BackingFormat | undefined, unsafe: boolean): Promise<void>;
  /** `qemu-img commit` into the backing file, which the image then shows through (capability `rebaseCommit`). */
  commit?(): Promise<void>;
  /** The VM-state area (`write -b`); where capabilities declare `vmState`. */
  vmStateWrite?(offset: number, data: Uint8Array, source: WriteSource): Promise<void>;
  /** Compare the VM-state area with the expected bytes (`read -b`); undefined when all match. */
  vmStateVerify?(offset: number, expected: Uint8Array): Promise<ReadMismatch | undefined>;
  /** `qemu-img amend -o OPTION` (or the implementation's own amend) with the image closed around it. */
  amend?(option: string): Promise<void>;
}

/** How a bash reproduction speaks to this implementation. */
export interface ScriptTool {
  /** Command prefix receiving `-c 'cmd'` arguments then the image path. */
  io: string;
  /** Command prefix for `snapshot -c NAME IMG` etc. */
  snapshot: string;
}

export interface ImplementationUnderTest {
  readonly name: string;
  /** How a reproduction script drives it (mixed alternates: see cases/script-writer.ts). */
  readonly scriptTool: ScriptTool;
  capabilities(): Promise<Capabilities>;
  /** Create an image with the layout and return its handle, open. */
  create(path: string, layout: ImageLayout): Promise<ImageHandle>;
  /** Release shared resources (none for most). */
  shutdown?(): Promise<void>;
}
