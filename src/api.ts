/**
 * The engine's public surface: what the CLI, the checker and the harness may use. `Qcow2Image`
 * (src/image.ts) implements `Image`. All offsets and lengths are byte counts (numbers, exact up to
 * 2^53). Every method is synchronous; failures throw `Qcow2Error` subclasses (src/errors.ts).
 */
import type { BlockDevice } from './io/device.ts';
import type { Header } from './format/header.ts';

export type Compat = '0.10' | '1.1';

export interface EncryptOptions {
  format: 'aes' | 'luks';
  /** The secret's bytes (a password). */
  secret: Uint8Array;
  /** LUKS only: cipher algorithm and iteration time, as qemu-img's encrypt.* options. */
  cipherAlg?: string;
  iterTimeMs?: number;
}

export interface CreateOptions {
  /** Virtual size in bytes (rounded up to 512 as qemu-img does). */
  size: number;
  compat?: Compat; // default '1.1'
  clusterSize?: number; // default 65536; 512 .. 2 MiB, a power of two
  refcountBits?: number; // default 16; 1, 2, 4, ..., 64
  lazyRefcounts?: boolean;
  extendedL2?: boolean;
  compressionType?: 'zlib' | 'zstd';
  preallocation?: 'off' | 'metadata' | 'falloc' | 'full';
  /** Backing file name as stored in the header (resolved from the image's directory). */
  backingFile?: string;
  backingFormat?: 'qcow2' | 'raw';
  /** Open the backing file at creation, which must then exist (default true; `qemu-img create -u`: false). */
  openBacking?: boolean;
  /** External data file name as stored in the header (resolved from the image's directory). */
  dataFile?: string;
  dataFileRaw?: boolean;
  encrypt?: EncryptOptions;
  /** fsync on flush (default true); tests and benchmarks may turn it off. */
  sync?: boolean;
}

export interface OpenOptions {
  readOnly?: boolean; // default false
  /** Secret for encrypted images. */
  secret?: Uint8Array;
  /** Open the backing chain (default true). */
  openBacking?: boolean;
  /** The backing file's format, over the image's backing format extension (QEMU's `backing.driver`). */
  backingFormat?: 'qcow2' | 'raw';
  /** The backing file, over the name in the image's header (QEMU's `backing.file.filename`). */
  backingFilename?: string;
  /** The backing file's secret (QEMU's `backing.encrypt.key-secret`). */
  backingSecret?: Uint8Array;
  /**
   * Open for metadata only (QEMU's BDRV_O_NO_IO: info, snapshot listing): an encrypted image
   * opens without its key. Otherwise a missing key refuses the open.
   */
  noIo?: boolean;
  sync?: boolean;
  /**
   * QEMU's runtime cache options (qcow2 driver: l2-cache-size, refcount-cache-size,
   * l2-cache-entry-size, cache-clean-interval). Sizes in bytes, interval in seconds. Unset: the
   * engine's defaults.
   */
  cache?: {
    /** QEMU's `cache-size`: the L2 and refcount caches together (read_cache_sizes' split). */
    cacheSize?: number;
    l2CacheSize?: number;
    refcountCacheSize?: number;
    l2CacheEntrySize?: number;
    cacheCleanInterval?: number;
  };
  /**
   * Discard handling. `unmap`: QEMU's BDRV_O_UNMAP open flag (`discard=unmap|ignore`, qemu-io -d;
   * default true here, as qemu-io's): off, guest discards are dropped and zero writes do not unmap.
   * The pass-discard-request/-snapshot/-other runtime options (defaults: unmap, true, false) say
   * which freed clusters become holes in the image file.
   */
  discard?: { unmap?: boolean; passRequest?: boolean; passSnapshot?: boolean; passOther?: boolean };
}

/** Status of a guest range, as `qemu-img map` needs it (bdrv_block_status semantics). */
export interface BlockStatus {
  /** Guest offset and length of the run with identical status. */
  offset: number;
  length: number;
  /** The data comes from this layer (depth 0) or a backing file (depth 1, 2, ...). */
  depth: number;
  /** Allocated in some layer of the chain (false: reads as zeros because nothing maps it). */
  present: boolean;
  /** Reads as zeros. */
  zero: boolean;
  /** Data is stored (allocated host cluster, or raw backing data). */
  data: boolean;
  compressed: boolean;
  /** Host offset in the layer's data file, when the data is at a fixed host offset (not compressed). */
  hostOffset?: number;
  /** Filename of the layer holding the data (for `map --output=json` "filename"). */
  filename: string;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  /** vm_state_size (bytes). */
  vmStateSize: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  /** Virtual disk size recorded in the snapshot (v3 extra data), or undefined in v2. */
  diskSize: number | undefined;
  icount: number | undefined;
  l1TableOffset: number;
  l1Size: number;
}

/** What every guest-visible disk offers: a qcow2 image, a raw file. */
/** QEMU's PreallocMode, for creation and growth. */
export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

export interface GuestDisk {
  readonly format: 'qcow2' | 'raw';
  readonly filename: string;
  /** Virtual size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Uint8Array;
  /** Read `out.length` bytes at `offset` into `out`. */
  readInto(out: Uint8Array, offset: number): void;
  write(offset: number, data: Uint8Array): void;
  writeZeroes(offset: number, length: number, opts?: { unmap?: boolean }): void;
  discard(offset: number, length: number): void;
  /** `preallocation` (qemu-img resize --preallocation): how the grown area is allocated. */
  resize(newSize: number, opts?: { shrink?: boolean; preallocation?: Preallocation }): void;
  blockStatus(offset: number, length: number): BlockStatus;
  flush(): void;
  close(): void;
}

export interface Image extends GuestDisk {
  readonly format: 'qcow2';
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly header: Readonly<Header>;
  readonly device: BlockDevice;

  /** Write zeros. Whole clusters become zero clusters (v3) where possible, deallocating when `unmap`. */
  writeZeroes(offset: number, length: number, opts?: { unmap?: boolean }): void;
  /** Compressed write of whole clusters (offset cluster-aligned; length a multiple of the cluster size or up to the end of the disk). */
  writeCompressed(offset: number, data: Uint8Array): void;
  /** Whole clusters in the range are freed; partial clusters are left as they are (QEMU's behaviour). */
  discard(offset: number, length: number): void;

  listSnapshots(): SnapshotInfo[];
  createSnapshot(name: string, opts?: { id?: string; vmStateSize?: number }): SnapshotInfo;
  /** Revert the active disk to a snapshot, found by id or name (qemu-img's lookup rule). */
  applySnapshot(idOrName: string): void;
  deleteSnapshot(idOrName: string): void;
  /** Read guest data as it was in a snapshot. */
  readSnapshot(idOrName: string, offset: number, length: number): Uint8Array;

  /** The VM-state area (qemu-io `write -b`/`read -b`): `pos` counts from its start, past the disk. */
  writeVmState(pos: number, data: Uint8Array): void;
  readVmState(pos: number, length: number): Uint8Array;
}
