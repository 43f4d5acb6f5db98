/**
 * The image facade: the public `Image` API (src/api.ts) over the engine parts in src/engine/.
 * It opens and creates qcow2 images, checks arguments and state, and puts an explicit corruption
 * guard around every public operation (QEMU's qcow2_signal_corruption: corrupt metadata met by
 * any operation on a writable image marks it corrupt and stops further writes). Everything else
 * is delegated, one concern per module:
 *
 *   engine/data-path.ts     reads and writes, copy-on-write, backing reads, sector encryption
 *   engine/cluster-ops.ts   zero, discard, resize, preallocate, make empty
 *   engine/block-status.ts  block status (qemu-img map)
 *   engine/snapshots.ts     internal snapshots
 *   engine/vm-state.ts      the VM-state area past the guest disk (qemu-io -b)
 *   engine/amend.ts         qemu-img amend (compat, refcount width, lazy refcounts, size …)
 *   engine/backing.ts       backing files: path resolution, chains, rebase -u, commit
 *   engine/encryption.ts    cipher set-up (AES, LUKS) and `info`'s encrypt block
 *   engine/bitmaps.ts       persistent dirty bitmaps kept as QEMU keeps them (dirty-bitmaps.ts)
 *   engine/metadata.ts      header state, the flush order, table relocation, corruption signal
 *   engine/options.ts       create options and resize rules
 */
import * as path from 'node:path';
import type {
  BlockStatus,
  CreateOptions,
  GuestDisk,
  Image,
  OpenOptions,
  Preallocation,
  SnapshotInfo,
} from './api.ts';
import {
  ArgumentError,
  CorruptionError,
  HeaderError,
  IoError,
  Qcow2Error,
  UnsupportedError,
} from './errors.ts';
import * as C from './format/constants.ts';
import { u32, textEncoder } from './format/bytes.ts';
import {
  backingFormat,
  dataFileName,
  decodeHeader,
  encodeHeader,
  newHeader,
  setExtension,
  type Header,
} from './format/header.ts';
import { validateHeader } from './format/header-validate.ts';
import { writeRefTable } from './format/tables.ts';
import { FileDevice, type BlockDevice } from './io/device.ts';
import { REQUESTS } from './io/lock.ts';
import { checkImage } from './check/index.ts';
import { MetadataWriter, defaultCacheBudget, type CacheBudget } from './engine/metadata.ts';
import { reportRepair } from './engine/lazy-refcounts.ts';
import { ImageState } from './engine/state.ts';
import { DataPath } from './engine/data-path.ts';
import { ClusterOps } from './engine/cluster-ops.ts';
import { BlockStatusQuery } from './engine/block-status.ts';
import { Snapshots } from './engine/snapshots.ts';
import { VmState } from './engine/vm-state.ts';
import { amendImage, type AmendOptions } from './engine/amend.ts';
import { BackingFiles, backingNodeName, openChainMember, resolveBackingPath } from './engine/backing.ts';
import { createLuksArea, encryptionInfo, unlockCipher, type EncryptionInfo } from './engine/encryption.ts';
import { Bitmaps, type BitmapListing, type BitmapSource } from './engine/bitmaps.ts';
import { InFlightRequests, type AsyncRequests } from './engine/aio.ts';
import { BrokenRefcounts, canEmptyCompletely, makeCompletelyEmpty } from './engine/make-empty.ts';
import { cacheBudget, checkQcow2Resize, validateCreateOptions } from './engine/options.ts';
import { discardPassthrough } from './engine/refcounts.ts';

export type { DataCipher } from './engine/state.ts';

export interface DeviceOpenOptions extends OpenOptions {
  filename?: string;
  /** Absolute paths of the images above this one in a backing chain (loop detection). */
  chain?: string[];
  /** For images on a device: the data file and backing disk, when the caller resolves them. */
  dataDevice?: BlockDevice;
  backing?: GuestDisk;
}

export class Qcow2Image implements Image {
  readonly format = 'qcow2' as const;
  readonly filename: string;
  readonly device: BlockDevice;
  readonly readOnly: boolean;
  readonly clusterBits: number;
  readonly clusterSize: number;
  private closed = false;
  /** A make-empty failed with the refcounts half rewritten: nothing more is written. */
  private broken = false;
  // (not readonly: a make-empty rebuilds them from the emptied image, `wire`)
  private meta!: MetadataWriter;
  private s!: ImageState;
  private dp!: DataPath;
  private ops!: ClusterOps;
  private status!: BlockStatusQuery;
  private snaps!: Snapshots;
  private vmState!: VmState;
  private backingFiles!: BackingFiles;
  private bitmaps!: Bitmaps;
  private readonly budget: CacheBudget;
  private readonly dataDevice: BlockDevice | undefined;
  /** The open's discard options (api.ts OpenOptions.discard). */
  private readonly discardOpts: NonNullable<OpenOptions['discard']>;
  /** BDRV_O_UNMAP: guest discards and unmapping zero writes reach the driver. */
  private get unmap(): boolean {
    return this.discardOpts.unmap ?? true;
  }

  private constructor(dev: BlockDevice, header: Header, opts: DeviceOpenOptions, budget?: CacheBudget) {
    this.device = dev;
    this.filename = opts.filename ?? dev.name;
    this.readOnly = opts.readOnly ?? dev.readOnly;
    this.clusterBits = header.clusterBits;
    this.clusterSize = 2 ** header.clusterBits;
    this.budget = budget ?? defaultCacheBudget(this.clusterSize);
    this.dataDevice = opts.dataDevice;
    this.discardOpts = opts.discard ?? {};
    this.wire(header, opts.backing);
  }

  /** The engine's parts over `header` (at open, and again after a make-empty rebuilt the image). */
  private wire(header: Header, backing: DeviceOpenOptions['backing']): void {
    const dev = this.device;
    const data = this.dataDevice ?? dev;
    this.meta = new MetadataWriter(
      dev,
      data,
      header,
      () => !this.closed && !this.broken && !this.readOnly,
      this.budget,
    );
    const d = this.discardOpts;
    this.meta.rc.passthrough = discardPassthrough({
      unmap: this.unmap,
      request: d.passRequest,
      snapshot: d.passSnapshot,
      other: d.passOther,
    });
    this.s = new ImageState(dev, data, this.filename, this.meta, backing);
    this.dp = new DataPath(this.s);
    this.ops = new ClusterOps(this.s, this.dp);
    this.status = new BlockStatusQuery(this.s);
    this.snaps = new Snapshots(this.s, this.dp);
    this.vmState = new VmState(this.s, this.dp, this.ops);
    this.backingFiles = new BackingFiles(this.s, this.ops, (d, o) => Qcow2Image.openDevice(d, o));
    this.bitmaps = new Bitmaps(dev, header, this.meta);
  }

  // ---------------------------------------------------------------- open / create

  static open(file: string, opts: OpenOptions = {}): Qcow2Image {
    const dev = FileDevice.open(file, { readOnly: opts.readOnly ?? false, sync: opts.sync ?? true });
    try {
      return Qcow2Image.openDevice(dev, { ...opts, filename: file });
    } catch (e) {
      dev.close();
      throw e;
    }
  }

  static openDevice(dev: BlockDevice, opts: DeviceOpenOptions = {}): Qcow2Image {
    const filename = opts.filename ?? dev.name;
    const fileSize = dev.size();
    const probe = new Uint8Array(Math.min(fileSize, C.HEADER_V3_QEMU_LENGTH));
    dev.read(probe, 0);
    if (probe.length >= 24 && u32(probe, 0) === C.QCOW_MAGIC) {
      const bits = u32(probe, 20);
      if (bits >= C.MIN_CLUSTER_BITS && bits <= C.MAX_CLUSTER_BITS) {
        const cluster0 = new Uint8Array(Math.min(fileSize, 2 ** bits));
        dev.read(cluster0, 0);
        return Qcow2Image.fromHeader(dev, decodeHeader(cluster0), { ...opts, filename });
      }
    }
    return Qcow2Image.fromHeader(dev, decodeHeader(probe), { ...opts, filename });
  }

  private static fromHeader(dev: BlockDevice, h: Header, opts: DeviceOpenOptions): Qcow2Image {
    validateHeader(h, dev.size());
    const readOnly = opts.readOnly ?? dev.readOnly;
    if (!readOnly && (h.incompatibleFeatures & C.INCOMPAT_CORRUPT) !== 0n) {
      throw new Qcow2Error('IMAGE_CORRUPT', 'qcow2: Image is corrupt; cannot be opened read/write', {
        field: 'incompatible_features',
      });
    }
    if (!readOnly && (h.incompatibleFeatures & C.INCOMPAT_DIRTY) !== 0n) {
      // A dirty image (lazy refcounts, not closed cleanly) has refcounts that cannot be trusted:
      // rebuild them before the first write, as QEMU's automatic repair on open does.
      const report = checkImage(dev, { repair: 'all', filename: opts.filename });
      reportRepair(report.messages);
      if (report.exitCode !== 0) {
        throw new CorruptionError(
          'DIRTY_REPAIR_FAILED',
          `Could not repair the dirty image: ${report.messages.join('; ')}`,
          0,
          { check: report.result },
        );
      }
      const cluster0 = new Uint8Array(Math.min(dev.size(), 2 ** h.clusterBits));
      dev.read(cluster0, 0);
      h = decodeHeader(cluster0);
      validateHeader(h, dev.size());
    }
    // Runtime cache options are checked before anything else is opened.
    const budget = cacheBudget(
      opts.cache,
      {
        clusterSize: 2 ** h.clusterBits,
        diskSize: h.size,
        extendedL2: (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n,
      },
      defaultCacheBudget(2 ** h.clusterBits),
    );
    const filename = opts.filename ?? dev.name;
    let dataDevice = opts.dataDevice;
    if (!dataDevice && (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n) {
      const name = dataFileName(h);
      if (!name)
        throw new HeaderError(
          'MISSING_DATA_FILE',
          // QEMU's words (qcow2_do_open): the name may come from the `data-file` open option only.
          "'data-file' is required for this image",
          'data_file',
          undefined,
        );
      const resolved = resolveBackingPath(filename, name);
      try {
        dataDevice = FileDevice.open(resolved, {
          readOnly,
          sync: opts.sync ?? true,
          lock: REQUESTS.dataFile(readOnly),
        });
      } catch (e) {
        // QEMU names the data file as the header stores it (bdrv_open_child of image_data_file).
        if (e instanceof IoError && resolved !== name)
          throw new IoError(e.code, e.message.split(`'${resolved}'`).join(`'${name}'`), e.data);
        throw e;
      }
    }
    let backing = opts.backing;
    if (!backing && h.backingFile !== undefined && (opts.openBacking ?? true)) {
      backing = openChainMember(
        opts.backingFilename ?? backingNodeName(filename, h.backingFile),
        {
          secret: opts.backingSecret,
          // `backing.driver` given at open wins over the image's backing format extension.
          format: opts.backingFormat,
          driver: backingFormat(h),
          readOnly: true,
          chain: [...(opts.chain ?? []), path.resolve(filename)],
        },
        (d, o) => Qcow2Image.openDevice(d, o),
      );
    }
    const img = new Qcow2Image(dev, h, { ...opts, readOnly, dataDevice, backing }, budget);
    try {
      // Without a secret the image still opens (info, map, check need no key); guest data
      // access then fails with MISSING_SECRET. A wrong secret fails here, before any write.
      if (h.cryptMethod !== C.QCOW_CRYPT_NONE && opts.secret) img.unlock(opts.secret);
      else if (h.cryptMethod !== C.QCOW_CRYPT_NONE && !opts.noIo) {
        throw new Qcow2Error('MISSING_SECRET', "Parameter 'encrypt.key-secret' is required for cipher", {
          filename: img.filename,
        });
      }
      // QEMU's rules for a read-write open: unknown autoclear bits are cleared; the bitmaps are
      // loaded and marked in use before anything changes.
      if (!readOnly) {
        img.meta.clearUnknownAutoclear();
        // (bad bitmaps refuse the open, as QEMU's do; they do not mark the image corrupt)
        img.bitmaps.openWritable();
      }
    } catch (e) {
      img.closeQuietlyAfterFailedOpen();
      throw e;
    }
    return img;
  }

  static create(file: string, opts: CreateOptions): Qcow2Image {
    const dev = FileDevice.create(file, { sync: opts.sync ?? true });
    try {
      return Qcow2Image.createOnDevice(dev, { ...opts, filename: file });
    } catch (e) {
      dev.close();
      throw e;
    }
  }

  static createOnDevice(
    dev: BlockDevice,
    opts: CreateOptions & { filename?: string; dataDevice?: BlockDevice },
  ): Qcow2Image {
    const g = validateCreateOptions(opts);
    const filename = opts.filename ?? dev.name;
    const h = newHeader({
      version: g.version,
      clusterBits: g.clusterBits,
      size: 0,
      refcountOrder: g.refcountOrder,
      extendedL2: opts.extendedL2,
      lazyRefcounts: opts.lazyRefcounts,
      compressionType: opts.compressionType === 'zstd' ? C.COMPRESSION_ZSTD : C.COMPRESSION_ZLIB,
    });
    if (opts.backingFile !== undefined) {
      h.backingFile = opts.backingFile;
      if (opts.backingFormat) setExtension(h, C.EXT_BACKING_FORMAT, textEncoder.encode(opts.backingFormat));
    }
    let dataDevice = opts.dataDevice;
    if (opts.dataFile !== undefined) {
      // Incompatible bit 2 and the data file name extension; autoclear bit 1 when raw.
      h.incompatibleFeatures |= C.INCOMPAT_DATA_FILE;
      setExtension(h, C.EXT_DATA_FILE, textEncoder.encode(opts.dataFile));
      if (opts.dataFileRaw) h.autoclearFeatures |= C.AUTOCLEAR_DATA_FILE_RAW;
      dataDevice ??= FileDevice.create(resolveBackingPath(filename, opts.dataFile), {
        sync: opts.sync ?? true,
        lock: REQUESTS.dataFile(false),
      });
    }
    if (opts.encrypt) h.cryptMethod = opts.encrypt.format === 'aes' ? C.QCOW_CRYPT_AES : C.QCOW_CRYPT_LUKS;
    // QEMU's initial layout: header, refcount table, one refcount block; the L1 table follows
    // through the ordinary allocator when the image is resized to its size.
    const cs = g.clusterSize;
    h.refcountTableOffset = cs;
    h.refcountTableClusters = 1;
    const cluster0 = new Uint8Array(cs);
    cluster0.set(encodeHeader(h));
    dev.truncate(0);
    dev.write(cluster0, 0);
    const reftable = new Uint8Array(cs);
    writeRefTable(reftable, 0, 2 * cs);
    dev.write(reftable, cs);
    dev.write(new Uint8Array(cs), 2 * cs); // the refcount block, filled below
    dev.flush();
    const img = new Qcow2Image(dev, h, { filename, readOnly: false, openBacking: false, dataDevice });
    for (let c = 0; c < 3; c++) img.meta.rc.increment(c, 1); // header, refcount table, refcount block
    if (opts.backingFile !== undefined && (opts.openBacking ?? true)) {
      try {
        // Metadata only (QEMU's create opens the backing file with BDRV_O_NO_IO): an encrypted
        // backing file needs no key to be named.
        img.s.backing = img.backingFiles.open(opts.backingFile, opts.backingFormat, { noIo: true });
      } catch (e) {
        img.close();
        throw e;
      }
    }
    try {
      img.meta.beforeFirstChange(); // lazy refcounts: dirty while the layout is built
      img.ops.resizeTo(g.size, false); // sizes the L1 table; the backing file shows through
      if (opts.encrypt?.format === 'luks') createLuksArea(img.s, opts.encrypt);
      else if (opts.encrypt) img.unlock(opts.encrypt.secret);
      // A raw data file maps every guest cluster to the same offset from the start (QEMU
      // preallocates that metadata at creation).
      if (opts.dataFileRaw) img.ops.preallocate('metadata');
      else if (opts.preallocation && opts.preallocation !== 'off') img.ops.preallocate(opts.preallocation);
      // QEMU creates an external data file as large as the disk (sparse without preallocation).
      if (opts.dataFile !== undefined && img.s.data.size() < g.size) {
        img.s.data.truncate(g.size);
        img.s.data.flush();
      }
      img.meta.flush();
      img.meta.markClean(); // a new image starts clean, lazy refcounts or not
    } catch (e) {
      img.closeQuietlyAfterFailedOpen();
      throw e;
    }
    return img;
  }

  private closeQuietlyAfterFailedOpen(): void {
    this.closed = true;
    try {
      if (this.s.hasDataFile) this.s.data.close();
      this.s.backing?.close();
    } catch {
      // the original error matters more
    }
  }

  // ---------------------------------------------------------------- guards

  get size(): number {
    return this.meta.header.size;
  }

  get header(): Header {
    return this.meta.header;
  }

  /** The open backing disk's size; 0 without one (qemu-img rebase's old_backing_size). */
  get backingSize(): number {
    return this.s.backing?.size ?? 0;
  }

  /** Throws unless the image is open. */
  private requireOpen(): void {
    if (this.closed) throw new Qcow2Error('CLOSED', 'The image is closed', { filename: this.filename });
  }

  /**
   * Throws unless the image is open, writable and not marked corrupt; then, before the first
   * change, puts the lazy-refcounts dirty bit on disk (metadata writer).
   */
  private beginChange(): void {
    this.requireOpen();
    if (this.readOnly)
      throw new Qcow2Error('READ_ONLY', `Image '${this.filename}' is open read-only`, {
        filename: this.filename,
      });
    const corrupt = this.meta.corrupt;
    if (corrupt) {
      throw new Qcow2Error(
        'IMAGE_CORRUPT',
        `Image '${this.filename}' was marked corrupt; no further writes (${corrupt})`,
        { filename: this.filename },
      );
    }
    this.meta.beforeFirstChange();
  }

  private checkRange(offset: number, length: number, size = this.size): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > size
    ) {
      throw new ArgumentError(
        'OUT_OF_RANGE',
        `Request out of range: offset ${offset}, length ${length}, disk size ${size}`,
        { offset, length, size },
      );
    }
  }

  /** The corruption guard every public operation runs in: report corruption met, then rethrow. */
  private guard<T>(op: () => T): T {
    try {
      return op();
    } catch (e) {
      if (e instanceof CorruptionError) this.signalCorruption(e);
      throw e;
    }
  }

  /**
   * QEMU's qcow2_signal_corruption: on a writable image, corrupt metadata found by any operation
   * sets the corrupt bit (incompatible bit 1) in the header and stops all further writes.
   */
  signalCorruption(e: CorruptionError): void {
    this.meta.signalCorruption(e);
  }

  // ---------------------------------------------------------------- encryption

  /** Derive the data cipher from the secret (legacy AES: the key; LUKS: unlock a key slot). */
  unlock(secret: Uint8Array): void {
    const cipher = unlockCipher(this.device, this.header, secret);
    if (cipher) this.s.cipher = cipher;
  }

  /** The `encrypt` block of `qemu-img info`; undefined when the image is not encrypted. */
  encryptInfo(): EncryptionInfo | undefined {
    this.requireOpen();
    return encryptionInfo(this.device, this.header);
  }

  /** Persistent bitmaps as `qemu-img info` lists them, with QEMU's warnings when ignored. */
  listBitmaps(): BitmapListing {
    this.requireOpen();
    return this.guard(() => this.bitmaps.list());
  }

  // ---------------------------------------------------------------- qemu-img bitmap

  /**
   * `qemu-img bitmap --add`: a new persistent bitmap, enabled unless `disabled`. The default
   * granularity is QEMU's (bdrv_get_default_bitmap_granularity): the cluster size within 4–64 KiB.
   */
  addBitmap(name: string, opts: { granularity?: number; disabled?: boolean } = {}): void {
    this.guard(() => {
      this.beginChange();
      const granularity = opts.granularity ?? Math.min(65536, Math.max(4096, this.clusterSize));
      this.bitmaps.live().add(name, granularity, { disabled: opts.disabled, diskSize: this.size });
    });
  }

  removeBitmap(name: string): void {
    this.guard(() => {
      this.beginChange();
      this.bitmaps.live().remove(name);
    });
  }

  clearBitmap(name: string): void {
    this.guard(() => {
      this.beginChange();
      this.bitmaps.live().clear(name);
    });
  }

  setBitmapEnabled(name: string, enabled: boolean): void {
    this.guard(() => {
      this.beginChange();
      this.bitmaps.live().setEnabled(name, enabled);
    });
  }

  /** `--merge`: `target` gains every range dirty in `source` (see bitmapSource). */
  mergeBitmap(target: string, source: BitmapSource): void {
    this.guard(() => {
      this.beginChange();
      this.bitmaps.live().merge(source, target, this.size);
    });
  }

  /** A bitmap's bits, as a merge source (this image or another one, open read-only). */
  bitmapSource(name: string): BitmapSource {
    return this.guard(() => {
      this.requireOpen();
      return this.bitmaps.source(name);
    });
  }

  // ---------------------------------------------------------------- guest data

  read(offset: number, length: number): Uint8Array {
    return this.guard(() => {
      this.requireOpen();
      this.checkRange(offset, length);
      const out = new Uint8Array(length);
      this.dp.readRange(out, offset);
      return out;
    });
  }

  /** Read into a caller's buffer (no allocation: benchmarks and copy loops reuse one buffer). */
  readInto(out: Uint8Array, offset: number): void {
    this.guard(() => {
      this.requireOpen();
      this.checkRange(offset, out.length);
      this.dp.readRange(out, offset);
    });
  }

  write(offset: number, data: Uint8Array): void {
    this.guard(() => {
      this.beginChange();
      this.checkRange(offset, data.length);
      this.dp.writeRange(offset, data);
      this.bitmaps.recordChange(offset, data.length);
    });
  }

  /**
   * Requests in flight (queue depth above one: qemu-img bench -d, qemu-io aio_*): data transfers
   * overlap on libuv's thread pool, metadata stays in order (engine/aio.ts). While requests are in
   * flight, use the image only through the returned object (drain, flush, close).
   */
  requests(): AsyncRequests {
    return new InFlightRequests(this.s, this.dp, {
      beginWrite: (offset, length) => {
        this.beginChange();
        this.checkRange(offset, length);
        this.bitmaps.recordChange(offset, length);
      },
      beginRead: (offset, length) => {
        this.requireOpen();
        this.checkRange(offset, length);
      },
      guard: (op) => this.guard(op),
      write: (offset, data) => this.write(offset, data),
      readInto: (out, offset) => this.readInto(out, offset),
      flush: () => this.flush(),
      close: () => this.close(),
    });
  }

  writeZeroes(offset: number, length: number, opts: { unmap?: boolean } = {}): void {
    this.guard(() => {
      this.beginChange();
      this.checkRange(offset, length);
      // the block layer drops BDRV_REQ_MAY_UNMAP when the open has no BDRV_O_UNMAP
      this.ops.writeZeroes(offset, length, { unmap: (opts.unmap ?? false) && this.unmap });
      this.bitmaps.recordChange(offset, length);
    });
  }

  writeCompressed(offset: number, data: Uint8Array): void {
    this.guard(() => {
      this.beginChange();
      this.checkRange(offset, data.length);
      const cs = this.clusterSize;
      if (offset % cs !== 0 || (data.length % cs !== 0 && offset + data.length !== this.size)) {
        throw new ArgumentError('UNALIGNED_COMPRESSED_WRITE', 'Compressed writes must cover whole clusters', {
          offset,
          length: data.length,
        });
      }
      if (this.s.hasDataFile) {
        throw new UnsupportedError(
          'COMPRESSED_DATA_FILE',
          'Compressed clusters are not supported with an external data file',
          {},
        );
      }
      if (this.header.cryptMethod !== C.QCOW_CRYPT_NONE) {
        throw new UnsupportedError(
          'COMPRESSED_ENCRYPTED',
          'Compressed writes are not supported on encrypted images',
          {},
        );
      }
      this.dp.writeCompressedRange(offset, data);
      this.bitmaps.recordChange(offset, data.length);
    });
  }

  discard(offset: number, length: number): void {
    this.guard(() => {
      // bdrv_co_pdiscard: "Do nothing if disabled" (no BDRV_O_UNMAP: qemu-io -d ignore), after
      // the request's range check and before anything is written
      if (!this.unmap) {
        this.requireOpen();
        this.checkRange(offset, length);
        return;
      }
      this.beginChange();
      this.checkRange(offset, length);
      this.ops.discard(offset, length);
      // (QEMU records the whole request, even where the discard changed nothing)
      this.bitmaps.recordChange(offset, length);
    });
  }

  resize(newSize: number, opts: { shrink?: boolean; preallocation?: Preallocation } = {}): void {
    this.guard(() => {
      this.beginChange();
      const h = this.header;
      checkQcow2Resize(
        {
          clusterBits: this.clusterBits,
          extendedL2: this.s.extendedL2,
          version: h.version,
          nbSnapshots: h.nbSnapshots,
        },
        this.size,
        newSize,
        opts.shrink ?? false,
      );
      const prealloc = opts.preallocation ?? 'off';
      // qcow2_co_truncate: a shrink takes no preallocation mode.
      if (newSize < this.size && prealloc !== 'off')
        throw new Qcow2Error('BAD_SIZE', "Preallocation can't be used for shrinking an image", {});
      this.ops.resizeTo(newSize, true, prealloc);
      this.bitmaps.resized();
    });
  }

  blockStatus(offset: number, length: number): BlockStatus {
    return this.guard(() => {
      this.requireOpen();
      this.checkRange(offset, length);
      return this.status.blockStatus(offset, length);
    });
  }

  // ---------------------------------------------------------------- backing files

  /**
   * Point the image at another backing file (or none) without touching guest data: what
   * `qemu-img rebase -u` does. The name is stored as given and resolved from the image's directory.
   */
  setBacking(name: string | undefined, format?: string, opts: { mustExist?: boolean } = {}): void {
    this.guard(() => {
      this.beginChange();
      this.backingFiles.set(name, format, opts.mustExist ?? true);
    });
  }

  /**
   * `qemu-img commit`: write everything this image holds into its backing file (growing it when
   * it is shorter), then empty this image so that the backing file shows through.
   */
  commit(): void {
    this.guard(() => {
      this.beginChange();
      this.backingFiles.commit((off, len) => this.read(off, len));
    });
  }

  /**
   * Empty the image so that the backing file shows through (qcow2_make_empty): a v3 image without
   * snapshots, bitmaps, encryption or data file is rebuilt from scratch under the dirty bit
   * (engine/make-empty.ts); any other image has every cluster discarded.
   */
  makeEmpty(): void {
    this.guard(() => {
      this.beginChange();
      const h = this.meta.header;
      if (!canEmptyCompletely(h, this.s.hasDataFile)) {
        this.ops.makeEmpty();
        return;
      }
      // Step 1: everything cached written back, then the dirty bit set and flushed (refcounts
      // are about to be broken utterly; a crash from here on leaves an image the next open repairs).
      this.meta.flush();
      this.meta.beginUnorderedChange();
      try {
        makeCompletelyEmpty(this.device, h);
      } catch (e) {
        if (!(e instanceof BrokenRefcounts)) throw e;
        // QEMU ejects the node (bs->drv = NULL): nothing in memory matches the disk any more, so
        // this handle writes nothing more; the dirty bit on disk makes the next open repair.
        this.broken = true;
        throw e.cause;
      }
      // The in-memory state is rebuilt from the emptied image.
      this.wire(h, this.s.backing);
    });
  }

  // ---------------------------------------------------------------- snapshots

  listSnapshots(): SnapshotInfo[] {
    this.requireOpen();
    return this.snaps.list();
  }

  createSnapshot(name: string, opts: { id?: string; vmStateSize?: number } = {}): SnapshotInfo {
    return this.guard(() => {
      this.beginChange();
      const info = this.snaps.create(name, opts);
      this.vmState.dropAfterSnapshot(info.vmStateSize);
      if (info.vmStateSize > 0) this.meta.flush();
      return info;
    });
  }

  applySnapshot(idOrName: string): void {
    this.guard(() => {
      this.beginChange();
      this.bitmaps.refuseSnapshotApply();
      this.snaps.apply(idOrName);
    });
  }

  deleteSnapshot(idOrName: string): void {
    this.guard(() => {
      this.beginChange();
      this.snaps.delete(idOrName);
    });
  }

  /** Guest clusters holding data in a snapshot (qemu-img measure -l). */
  snapshotDataClusters(idOrName: string): number[] {
    return this.guard(() => {
      this.requireOpen();
      return [...this.snaps.dataClusters(idOrName)];
    });
  }

  readSnapshot(idOrName: string, offset: number, length: number): Uint8Array {
    return this.guard(() => {
      this.requireOpen();
      return this.snaps.read(idOrName, offset, length);
    });
  }

  // ---------------------------------------------------------------- qemu-img amend

  /** Change image options in place, as `qemu-img amend -o` does (engine/amend.ts). */
  amend(opts: AmendOptions & { progress?: (fraction: number) => void }): void {
    this.guard(() => {
      this.beginChange();
      amendImage(
        {
          progress: opts.progress,
          s: this.s,
          dp: this.dp,
          snapshots: () => this.snaps.list(),
          upgradeSnapshotTable: () => this.snaps.upgradeTable(),
          resize: (size) => this.resize(size, { shrink: true }),
        },
        opts,
      );
    });
  }

  // ---------------------------------------------------------------- VM state

  writeVmState(pos: number, data: Uint8Array): void {
    this.guard(() => {
      this.beginChange();
      this.vmState.write(pos, data);
    });
  }

  readVmState(pos: number, length: number): Uint8Array {
    return this.guard(() => {
      this.requireOpen();
      return this.vmState.read(pos, length);
    });
  }

  /**
   * The runtime option `lazy-refcounts` (qemu-io `reopen -o lazy-refcounts=on|off`, QEMU's
   * qcow2_update_options): v3 only; turning it off makes the image clean first (lazy-refcounts.ts).
   */
  setLazyRefcounts(on: boolean): void {
    this.guard(() => {
      this.requireOpen();
      if (on && this.header.version < 3)
        throw new ArgumentError(
          'INVALID_OPTION',
          'Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level',
          { option: 'lazy-refcounts' },
        );
      if (!on && !this.readOnly) this.meta.markClean();
      this.meta.lazy.enabled = on;
    });
  }

  // ---------------------------------------------------------------- flush / close

  flush(): void {
    this.guard(() => this.meta.flush());
  }

  close(): void {
    if (this.closed) return;
    try {
      if (!this.meta.corrupt && !this.broken) {
        if (!this.readOnly) this.bitmaps.storeOnClose(); // bitmaps, then the header points at them
        this.meta.flush();
        this.meta.markClean();
      }
    } finally {
      this.closed = true;
      if (this.s.hasDataFile) this.s.data.close();
      this.s.backing?.close();
      this.device.close();
    }
  }
}
