/**
 * The image facade: opens and creates qcow2 images, serves guest reads and writes, and alone
 * decides the order in which metadata reaches the disk (`flush`):
 *
 *   1. guest data (written straight through; an external data file is flushed first)
 *   2. refcount blocks, then the refcount table         — new clusters are counted before use
 *   3. L2 tables                                        — after the refcounts they rely on
 *   4. the L1 table and the header                      — after the L2 tables they point to
 *   5. deferred refcount decrements                     — after no table points at the cluster
 *
 * with a device flush between steps. The L2 cache's dependency on the refcount layer enforces
 * 2 → 3 even when an eviction writes an L2 table early. A crash at any point leaves at worst
 * leaked clusters.
 */
import * as path from 'node:path';
import type { BlockStatus, CreateOptions, GuestDisk, Image, OpenOptions, SnapshotInfo } from './api.ts';
import { ArgumentError, CorruptionError, HeaderError, Qcow2Error, UnsupportedError } from './errors.ts';
import * as C from './format/constants.ts';
import { alignUp, u32 } from './format/bytes.ts';
import {
  backingFormat,
  cryptoHeaderPointer,
  encodeCryptoHeaderPointer,
  dataFileName,
  decodeHeader,
  encodeHeader,
  l1EntriesFor,
  newHeader,
  setExtension,
  validateHeader,
  type Header,
} from './format/header.ts';
import {
  ClusterType,
  readL1,
  readL2,
  SubclusterType,
  subclusterType,
  writeL1,
  writeL2,
  writeRefTable,
  type L2Entry,
  type L2Write,
} from './format/tables.ts';
import { encodeSnapshotTable, snapshotTableSize, type SnapshotEntry } from './format/snapshot.ts';
import {
  countTreeReferences,
  findSnapshot,
  loadSnapshotTable,
  newSnapshotId,
  readSnapshotL1,
} from './engine/snapshots.ts';
import { textEncoder } from './format/bytes.ts';
import { FileDevice, type BlockDevice } from './io/device.ts';
import { RefcountOverflowError, Refcounts } from './engine/refcounts.ts';
import { Allocator } from './engine/allocator.ts';
import { ClusterMap } from './engine/cluster-map.ts';
import { codecFor, type ClusterCodec } from './codecs/index.ts';
import { checkImage } from './check/index.ts';
import { AesLegacyCipher, aesLegacyKey } from './crypto/aes-legacy.ts';
import { createLuksHeader, decodeLuksHeader, LuksCipher, unlockLuks } from './crypto/luks.ts';
import { openImage } from './open.ts';

/** Extended L2 bitmaps: every subcluster. */
const ALL_SUBCLUSTERS = 0xffffffff;

/** Bits first..last (inclusive) of a subcluster bitmap. */
function subclusterMask(first: number, last: number): number {
  const width = last - first + 1;
  return width >= 32 ? ALL_SUBCLUSTERS : ((2 ** width - 1) * 2 ** first) >>> 0;
}

/** Does the entry own a host cluster (data or preallocated zeros)? */
function hasHost(e: L2Entry): boolean {
  return e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc;
}

/**
 * Encryption of guest data (qcow2.txt "crypt_method"): legacy AES derives each sector's IV from
 * the guest offset, LUKS from the host offset. Buffers are whole sectors, changed in place.
 */
export interface DataCipher {
  encrypt(buf: Uint8Array, hostOffset: number, guestOffset: number): void;
  decrypt(buf: Uint8Array, hostOffset: number, guestOffset: number): void;
}

/** Copy a cipher's result back when it did not work in place. */
function inPlace(buf: Uint8Array, out: Uint8Array): void {
  if (out !== buf) buf.set(out);
}

/** Metadata cache budget (bytes per cache): fixed, whatever the image size. */
const L2_CACHE_BYTES = 4 * 1024 * 1024;
const REFCOUNT_CACHE_BYTES = 1024 * 1024;

export interface DeviceOpenOptions extends OpenOptions {
  filename?: string;
  /** Absolute paths of the images above this one in a backing chain (loop detection). */
  chain?: string[];
  /** For images on a device: the data file and backing disk, when the caller resolves them. */
  dataDevice?: BlockDevice;
  backing?: GuestDisk;
}

function cacheEntries(bytes: number, clusterSize: number): number {
  return Math.max(16, Math.floor(bytes / clusterSize));
}

export class Qcow2Image implements Image {
  readonly format = 'qcow2' as const;
  readonly filename: string;
  readonly device: BlockDevice;
  readonly readOnly: boolean;
  readonly clusterBits: number;
  readonly clusterSize: number;
  header: Header;
  /** Where guest data lives: the image itself or its external data file. */
  private data: BlockDevice;
  private backing: GuestDisk | undefined;
  private rc!: Refcounts;
  private alloc!: Allocator;
  private map!: ClusterMap;
  private headerDirty = false;
  private closed = false;
  private snapshots: SnapshotEntry[] = [];
  /** Encoded size of the snapshot table on disk. */
  private snapshotTableBytes = 0;
  /** Set (with the reason) once corruption was detected on a writable image: writes stop. */
  private corrupt: string | undefined;
  /** Lazy refcounts: the dirty bit is set on disk (cleared by a clean close). */
  private lazyDirty = false;
  private codecCache: ClusterCodec | undefined;
  /** Set when the image is encrypted and a key was given (or created). */
  private cipher: DataCipher | undefined;
  private readonly extendedL2: boolean;
  /** Last decompressed cluster (host descriptor offset → bytes): sequential reads hit it. */
  private inflated: { offset: number; bytes: Uint8Array } | undefined;

  private constructor(dev: BlockDevice, header: Header, opts: DeviceOpenOptions) {
    this.device = dev;
    this.filename = opts.filename ?? dev.name;
    this.readOnly = opts.readOnly ?? dev.readOnly;
    this.header = header;
    this.clusterBits = header.clusterBits;
    this.clusterSize = 2 ** header.clusterBits;
    this.extendedL2 = (header.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
    this.data = opts.dataDevice ?? dev;
    this.backing = opts.backing;
    this.initLayers();
    this.snapshots = loadSnapshotTable(dev, header);
    this.snapshotTableBytes = snapshotTableSize(this.snapshots);
  }

  private initLayers(): void {
    const h = this.header;
    const cs = this.clusterSize;
    this.rc = new Refcounts(this.device, {
      clusterBits: h.clusterBits,
      order: h.refcountOrder,
      tableOffset: h.refcountTableOffset,
      tableClusters: h.refcountTableClusters,
      cacheBlocks: cacheEntries(REFCOUNT_CACHE_BYTES, cs),
    });
    this.alloc = new Allocator(this.device, this.rc, {
      switchRefTable: (offset, clusters) => {
        this.header.refcountTableOffset = offset;
        this.header.refcountTableClusters = clusters;
        this.writeHeader();
        this.device.flush();
      },
      metadataAt: (c) => this.metadataAt(c),
    });
    this.map = new ClusterMap(
      this.device,
      {
        alloc: (n) => this.alloc.alloc(n),
        free: (off) => this.freeCluster(off),
        refcount: (off) => this.rc.get(off / cs),
      },
      {
        clusterBits: h.clusterBits,
        extendedL2: this.extendedL2,
        dataFile: (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n,
        l1Offset: h.l1TableOffset,
        l1Size: h.l1Size,
        cacheTables: cacheEntries(L2_CACHE_BYTES, cs),
      },
    );
    // Declared write order: L2 tables are written only after the refcounts they rely on.
    this.map.cache.setDependency(this.rc);
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
    const base = path.dirname(opts.filename ?? dev.name);
    let dataDevice = opts.dataDevice;
    if (!dataDevice && (h.incompatibleFeatures & C.INCOMPAT_DATA_FILE) !== 0n) {
      const name = dataFileName(h);
      if (!name)
        throw new HeaderError(
          'MISSING_DATA_FILE',
          'Image has the external data file bit but no data file name',
          'data_file',
          undefined,
        );
      dataDevice = FileDevice.open(path.resolve(base, name), { readOnly, sync: opts.sync ?? true });
    }
    let backing = opts.backing;
    if (!backing && h.backingFile !== undefined && (opts.openBacking ?? true)) {
      const fmt = backingFormat(h);
      backing = openImage(path.resolve(base, h.backingFile), {
        format: fmt === 'raw' ? 'raw' : fmt === 'qcow2' ? 'qcow2' : undefined,
        readOnly: true,
        chain: [...(opts.chain ?? []), path.resolve(opts.filename ?? dev.name)],
      });
    }
    const img = new Qcow2Image(dev, h, { ...opts, readOnly, dataDevice, backing });
    try {
      // Without a secret the image still opens (info, map, check need no key); guest data
      // access then fails with MISSING_SECRET. A wrong secret fails here, before any write.
      if (h.cryptMethod !== C.QCOW_CRYPT_NONE && opts.secret) img.unlock(opts.secret);
      else if (h.cryptMethod !== C.QCOW_CRYPT_NONE && !opts.noIo) {
        throw new Qcow2Error('MISSING_SECRET', "Parameter 'encrypt.key-secret' is required for cipher", {
          filename: img.filename,
        });
      }
      if (!readOnly) img.onOpenWritable();
    } catch (e) {
      img.closeQuietlyAfterFailedOpen();
      throw e;
    }
    return img;
  }

  /** QEMU's rules for a read-write open: unknown autoclear bits are cleared. */
  private onOpenWritable(): void {
    const h = this.header;
    // Unknown autoclear bits are cleared; the bitmaps bit goes with the first guest write.
    const keep = h.autoclearFeatures & C.AUTOCLEAR_MASK;
    if (keep !== h.autoclearFeatures) {
      h.autoclearFeatures = keep;
      this.writeHeader();
      this.device.flush();
    }
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
    const version = (opts.compat ?? '1.1') === '0.10' ? 2 : 3;
    const clusterSize = opts.clusterSize ?? 65536;
    const clusterBits = Math.log2(clusterSize);
    if (
      !Number.isInteger(clusterBits) ||
      clusterBits < C.MIN_CLUSTER_BITS ||
      clusterBits > C.MAX_CLUSTER_BITS
    ) {
      throw new ArgumentError(
        'BAD_CLUSTER_SIZE',
        'Cluster size must be a power of two between 512 and 2048k',
        { cluster_size: clusterSize },
      );
    }
    const refcountBits = opts.refcountBits ?? 16;
    const order = Math.log2(refcountBits);
    if (!Number.isInteger(order) || order < 0 || order > 6) {
      throw new ArgumentError(
        'BAD_REFCOUNT_BITS',
        'Refcount width must be a power of two and may not exceed 64 bits',
        { refcount_bits: refcountBits },
      );
    }
    if (version === 2) {
      if (refcountBits !== 16)
        throw new ArgumentError(
          'BAD_REFCOUNT_BITS',
          'Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)',
          {},
        );
      if (opts.lazyRefcounts)
        throw new ArgumentError(
          'BAD_OPTION',
          'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
          {},
        );
      if (opts.extendedL2)
        throw new ArgumentError(
          'BAD_OPTION',
          'Extended L2 entries are only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
          {},
        );
      if (opts.compressionType === 'zstd')
        throw new ArgumentError(
          'BAD_OPTION',
          'Compression type selection is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
          {},
        );
      if (opts.dataFile)
        throw new ArgumentError(
          'BAD_OPTION',
          'Data file is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)',
          {},
        );
    }
    if (opts.extendedL2 && clusterBits < 14) {
      throw new ArgumentError(
        'BAD_CLUSTER_SIZE',
        'Extended L2 entries are only supported with cluster sizes of at least 16384 bytes',
        { cluster_size: clusterSize },
      );
    }
    const size = alignUp(opts.size, 512);
    if (l1EntriesFor(size, clusterBits, !!opts.extendedL2) > C.QCOW_MAX_L1_SIZE / 8) {
      throw new ArgumentError(
        'IMAGE_TOO_BIG',
        `Image size ${size} is too large for cluster size ${clusterSize}`,
        { size },
      );
    }
    const h = newHeader({
      version,
      clusterBits,
      size: 0,
      refcountOrder: order,
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
      dataDevice ??= FileDevice.create(path.resolve(path.dirname(opts.filename ?? dev.name), opts.dataFile), {
        sync: opts.sync ?? true,
      });
    } else if (opts.dataFileRaw) {
      throw new ArgumentError('BAD_OPTION', 'data-file-raw requires a data file', {});
    }
    if (opts.encrypt) {
      if (opts.dataFile !== undefined && opts.encrypt.format === 'aes')
        throw new ArgumentError(
          'BAD_OPTION',
          'AES encryption is not supported with an external data file',
          {},
        );
      h.cryptMethod = opts.encrypt.format === 'aes' ? C.QCOW_CRYPT_AES : C.QCOW_CRYPT_LUKS;
    }
    // QEMU's initial layout: header, refcount table, one refcount block; the L1 table follows
    // through the ordinary allocator when the image is resized to its size.
    h.refcountTableOffset = clusterSize;
    h.refcountTableClusters = 1;
    const cluster0 = new Uint8Array(clusterSize);
    cluster0.set(encodeHeader(h));
    dev.truncate(0);
    dev.write(cluster0, 0);
    const reftable = new Uint8Array(clusterSize);
    writeRefTable(reftable, 0, 2 * clusterSize);
    dev.write(reftable, clusterSize);
    dev.write(new Uint8Array(clusterSize), 2 * clusterSize); // the refcount block, filled below
    dev.flush();
    const img = new Qcow2Image(dev, h, {
      filename: opts.filename ?? dev.name,
      readOnly: false,
      openBacking: false,
      dataDevice,
    });
    for (let c = 0; c < 3; c++) img.rc.increment(c, 1); // header, refcount table, refcount block
    if (opts.backingFile !== undefined) {
      const base = path.dirname(opts.filename ?? dev.name);
      try {
        img.backing = openImage(path.resolve(base, opts.backingFile), {
          format: opts.backingFormat,
          readOnly: true,
          chain: [path.resolve(opts.filename ?? dev.name)],
        });
      } catch (e) {
        img.close();
        throw e;
      }
    }
    try {
      img.resizeTo(size, false, false); // sizes the L1 table; the backing file shows through
      if (opts.encrypt?.format === 'luks') img.createLuksArea(opts.encrypt);
      else if (opts.encrypt) img.unlock(opts.encrypt.secret);
      // A raw data file maps every guest cluster to the same offset from the start (QEMU
      // preallocates that metadata at creation).
      if (opts.dataFileRaw) img.preallocate('metadata');
      else if (opts.preallocation && opts.preallocation !== 'off') img.preallocate(opts.preallocation);
      img.flush();
      img.markClean(); // a new image starts clean, lazy refcounts or not
    } catch (e) {
      img.closeQuietlyAfterFailedOpen();
      throw e;
    }
    return img;
  }

  private closeQuietlyAfterFailedOpen(): void {
    this.closed = true;
    try {
      if (this.data !== this.device) this.data.close();
      this.backing?.close();
    } catch {
      // the original error matters more
    }
  }

  // ---------------------------------------------------------------- encryption

  /** Derive the data cipher from the secret (legacy AES: the key; LUKS: unlock a key slot). */
  unlock(secret: Uint8Array): void {
    const h = this.header;
    if (h.cryptMethod === C.QCOW_CRYPT_AES) {
      const aes = new AesLegacyCipher(aesLegacyKey(secret));
      const S = C.SECTOR_SIZE;
      this.cipher = {
        encrypt: (buf, _host, guest) => inPlace(buf, aes.encrypt(buf, guest / S)),
        decrypt: (buf, _host, guest) => inPlace(buf, aes.decrypt(buf, guest / S)),
      };
      return;
    }
    if (h.cryptMethod !== C.QCOW_CRYPT_LUKS) return;
    const ptr = cryptoHeaderPointer(h);
    if (!ptr)
      throw new HeaderError(
        'MISSING_CRYPTO_HEADER',
        'LUKS image without a crypto header extension',
        'crypt_method',
        h.cryptMethod,
      );
    if (
      ptr.offset % this.clusterSize !== 0 ||
      ptr.length > C.QCOW_MAX_L1_SIZE ||
      ptr.offset + ptr.length > this.device.size()
    ) {
      throw new CorruptionError(
        'CORRUPT_CRYPTO_HEADER',
        `Invalid LUKS header area (offset 0x${ptr.offset.toString(16)}, length ${ptr.length})`,
        ptr.offset,
        { length: ptr.length },
      );
    }
    const area = new Uint8Array(ptr.length);
    this.device.read(area, ptr.offset);
    const luksHeader = decodeLuksHeader(area, ptr.offset);
    const key = unlockLuks(luksHeader, area, secret, ptr.offset);
    this.setLuksCipher(new LuksCipher(luksHeader, key));
  }

  private setLuksCipher(luks: LuksCipher): void {
    this.cipher = {
      encrypt: (buf, host) => inPlace(buf, luks.encrypt(buf, host)),
      decrypt: (buf, host) => inPlace(buf, luks.decrypt(buf, host)),
    };
  }

  /** A new LUKS header in its own clusters, pointed at by the crypto header extension. */
  private createLuksArea(enc: NonNullable<CreateOptions['encrypt']>): void {
    const created = createLuksHeader(enc.secret, {
      iterTimeMs: enc.iterTimeMs,
      cipherAlg: (enc.cipherAlg as 'aes-128' | 'aes-192' | 'aes-256' | undefined) ?? undefined,
    });
    const cs = this.clusterSize;
    const clusters = Math.ceil(created.length / cs);
    const offset = this.alloc.alloc(clusters);
    const padded = new Uint8Array(clusters * cs);
    padded.set(created.bytes);
    this.device.write(padded, offset);
    setExtension(
      this.header,
      C.EXT_CRYPTO_HEADER,
      encodeCryptoHeaderPointer({ offset, length: created.length }),
    );
    this.headerDirty = true;
    this.setLuksCipher(new LuksCipher(created.header, created.masterKey));
  }

  // ---------------------------------------------------------------- accessors

  get size(): number {
    return this.header.size;
  }

  private get codec(): ClusterCodec {
    return (this.codecCache ??= codecFor(this.header.compressionType));
  }

  private checkOpen(write: boolean): void {
    if (this.closed) throw new Qcow2Error('CLOSED', 'The image is closed', { filename: this.filename });
    if (write && this.readOnly)
      throw new Qcow2Error('READ_ONLY', `Image '${this.filename}' is open read-only`, {
        filename: this.filename,
      });
    if (write && this.corrupt) {
      throw new Qcow2Error(
        'IMAGE_CORRUPT',
        `Image '${this.filename}' was marked corrupt; no further writes (${this.corrupt})`,
        { filename: this.filename },
      );
    }
    if (write && !this.lazyDirty && (this.header.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n) {
      // Lazy refcounts (compatible bit 0): the dirty bit (incompatible bit 0) goes to disk before
      // the first change, so that refcount updates may lag behind the tables until a clean close;
      // a crash leaves a dirty image that the next read-write open repairs.
      this.lazyDirty = true;
      this.header.incompatibleFeatures |= C.INCOMPAT_DIRTY;
      this.writeHeader();
      this.device.flush();
    }
    if (write && (this.header.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n) {
      // We change guest data without updating persistent bitmaps: autoclear bit 0 tells readers
      // the bitmaps extension is no longer consistent (qcow2.txt "autoclear features"). Written
      // before the data changes.
      this.header.autoclearFeatures &= ~C.AUTOCLEAR_BITMAPS;
      this.writeHeader();
      this.device.flush();
    }
  }

  private checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw new ArgumentError(
        'OUT_OF_RANGE',
        `Request out of range: offset ${offset}, length ${length}, disk size ${this.size}`,
        { offset, length, size: this.size },
      );
    }
  }

  // ---------------------------------------------------------------- reads

  read(offset: number, length: number): Uint8Array {
    this.checkOpen(false);
    this.checkRange(offset, length);
    const out = new Uint8Array(length);
    this.readRange(out, offset);
    return out;
  }

  /** Read into a caller's buffer (no allocation: benchmarks and copy loops reuse one buffer). */
  readInto(out: Uint8Array, offset: number): void {
    this.checkOpen(false);
    this.checkRange(offset, out.length);
    this.readRange(out, offset);
  }

  private readRange(out: Uint8Array, offset: number): void {
    const cs = this.clusterSize;
    let done = 0;
    while (done < out.length) {
      const pos = offset + done;
      const guestCluster = Math.floor(pos / cs);
      const inCluster = pos - guestCluster * cs;
      const n = Math.min(cs - inCluster, out.length - done);
      const dst = out.subarray(done, done + n);
      this.readCluster(this.map.lookup(guestCluster), guestCluster, inCluster, dst);
      done += n;
    }
  }

  private readCluster(e: L2Entry, guestCluster: number, inCluster: number, dst: Uint8Array): void {
    if (this.extendedL2 && e.type !== ClusterType.Compressed) {
      this.readSubclusters(e, guestCluster, inCluster, dst);
      return;
    }
    switch (e.type) {
      case ClusterType.Normal:
        this.checkHostCluster(e, guestCluster);
        this.readData(dst, e.hostOffset + inCluster, guestCluster * this.clusterSize + inCluster);
        return;
      case ClusterType.ZeroPlain:
      case ClusterType.ZeroAlloc:
        dst.fill(0);
        return;
      case ClusterType.Compressed:
        dst.set(this.inflate(e).subarray(inCluster, inCluster + dst.length));
        return;
      case ClusterType.Unallocated:
        this.readBacking(guestCluster * this.clusterSize + inCluster, dst);
        return;
    }
  }

  /** Extended L2 (qcow2.txt "Extended L2 Entries"): each subcluster has its own state. */
  private readSubclusters(e: L2Entry, guestCluster: number, inCluster: number, dst: Uint8Array): void {
    const sc = this.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    for (let done = 0; done < dst.length;) {
      const pos = inCluster + done;
      const i = Math.floor(pos / sc);
      const n = Math.min((i + 1) * sc - pos, dst.length - done);
      const part = dst.subarray(done, done + n);
      switch (subclusterType(e, i)) {
        case SubclusterType.Normal:
          this.checkHostCluster(e, guestCluster);
          this.readData(part, e.hostOffset + pos, guestCluster * this.clusterSize + pos);
          break;
        case SubclusterType.ZeroPlain:
        case SubclusterType.ZeroAlloc:
          part.fill(0);
          break;
        case SubclusterType.UnallocatedPlain:
        case SubclusterType.UnallocatedAlloc:
          this.readBacking(guestCluster * this.clusterSize + pos, part);
          break;
        default:
          throw new CorruptionError(
            'CORRUPT_SUBCLUSTER',
            `Invalid subcluster ${i} state in the L2 entry of guest cluster ${guestCluster} (allocation and zero bits both set, or allocated without a host cluster)`,
            e.hostOffset,
            { guestCluster, subcluster: i },
          );
      }
      done += n;
    }
  }

  private checkHostCluster(e: L2Entry, guestCluster: number): void {
    // QEMU's read path checks alignment only; reserved bits are the checker's business.
    if (e.hostOffset % this.clusterSize !== 0) {
      throw new CorruptionError(
        'CORRUPT_L2',
        `L2 entry for guest cluster ${guestCluster} has an invalid host offset 0x${e.hostOffset.toString(16)}`,
        e.hostOffset,
        { guestCluster },
      );
    }
  }

  private readBacking(guestOffset: number, dst: Uint8Array): void {
    const b = this.backing;
    if (!b || guestOffset >= b.size) {
      dst.fill(0);
      return;
    }
    const n = Math.min(dst.length, b.size - guestOffset);
    dst.set(b.read(guestOffset, n));
    if (n < dst.length) dst.fill(0, n);
  }

  private inflate(e: L2Entry): Uint8Array {
    if (this.inflated?.offset === e.hostOffset) return this.inflated.bytes;
    const len = e.compressedLength;
    if (e.hostOffset + len > this.data.size() + C.SECTOR_SIZE || len > 2 * this.clusterSize + C.SECTOR_SIZE) {
      throw new CorruptionError(
        'COMPRESSED_OUT_OF_RANGE',
        `Compressed cluster of ${len} bytes at 0x${e.hostOffset.toString(16)} lies beyond the end of the image`,
        e.hostOffset,
        { length: len },
      );
    }
    const src = new Uint8Array(len);
    this.data.read(src, e.hostOffset);
    const bytes = this.codec.decompress(src, this.clusterSize, e.hostOffset);
    this.inflated = { offset: e.hostOffset, bytes };
    return bytes;
  }

  /** The whole guest cluster as it reads now (for copy-on-write). */
  private readWholeCluster(guestCluster: number, e: L2Entry): Uint8Array {
    const buf = new Uint8Array(this.clusterSize);
    const visible = Math.min(this.clusterSize, this.size - guestCluster * this.clusterSize);
    if (visible > 0) this.readCluster(e, guestCluster, 0, buf.subarray(0, visible));
    return buf;
  }

  // ---------------------------------------------------------------- writes

  write(offset: number, data: Uint8Array): void {
    this.checkOpen(true);
    this.checkRange(offset, data.length);
    const cs = this.clusterSize;
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const guestCluster = Math.floor(pos / cs);
      const inCluster = pos - guestCluster * cs;
      const n = Math.min(cs - inCluster, data.length - done);
      this.writeCluster(guestCluster, inCluster, data.subarray(done, done + n));
      done += n;
    }
    this.inflated = undefined;
  }

  /** Write `src` at `inCluster` of a guest cluster, allocating / copying on write as needed. */
  private writeCluster(guestCluster: number, inCluster: number, src: Uint8Array): void {
    const e = this.map.lookup(guestCluster);
    const cs = this.clusterSize;
    if (this.extendedL2 && e.type !== ClusterType.Compressed) {
      this.writeSubclusters(guestCluster, e, inCluster, src);
      return;
    }
    if (e.type === ClusterType.Normal && this.ownsExclusively(e)) {
      this.checkHostCluster(e, guestCluster);
      this.writeData(src, e.hostOffset + inCluster, guestCluster * cs + inCluster);
      if (!e.copied)
        this.setEntry(guestCluster, { type: ClusterType.Normal, hostOffset: e.hostOffset, copied: true });
      return;
    }
    // The L2 table first (QEMU's order: a fresh image gets its first L2 table at 0x40000 and the
    // first data cluster after it).
    this.map.slotForWrite(guestCluster);
    const guestOffset = guestCluster * cs;
    const readsAsZero =
      e.type === ClusterType.ZeroAlloc ||
      e.type === ClusterType.ZeroPlain ||
      (e.type === ClusterType.Unallocated && (!this.backing || guestOffset >= this.backing.size));
    let host: number;
    if (e.type === ClusterType.ZeroAlloc && this.ownsExclusively(e)) {
      host = e.hostOffset; // a preallocated zero cluster keeps its host cluster
    } else {
      host = this.allocData(guestCluster);
      this.releaseEntry(e);
    }
    if (src.length === cs) {
      this.writeData(src, host, guestOffset);
    } else if (readsAsZero && host >= this.data.size() && !this.cipher) {
      // A fresh cluster past the end of the file already reads as zeros: write only the data
      // and extend the file over the rest (sparse), instead of writing a cluster of zeros.
      this.data.write(src, host + inCluster);
      if (this.data.size() < host + cs) this.data.truncate(host + cs);
    } else {
      // Copy-on-write: the parts of the cluster not written come from what it reads as now.
      const full = readsAsZero ? new Uint8Array(cs) : this.readWholeCluster(guestCluster, e);
      full.set(src, inCluster);
      this.writeData(full, host, guestOffset);
    }
    this.setEntry(guestCluster, {
      type: ClusterType.Normal,
      hostOffset: host,
      copied: true,
      allocBitmap: ALL_SUBCLUSTERS,
    });
  }

  /**
   * Subcluster-granular write: only the subclusters the write touches become allocated; a partly
   * written subcluster is completed from what it reads as now (copy-on-write per subcluster).
   */
  private writeSubclusters(guestCluster: number, e: L2Entry, inCluster: number, src: Uint8Array): void {
    const sc = this.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    const first = Math.floor(inCluster / sc);
    const last = Math.floor((inCluster + src.length - 1) / sc);
    const start = first * sc;
    const end = (last + 1) * sc;
    const buf = new Uint8Array(end - start);
    if (inCluster > start) this.readCluster(e, guestCluster, start, buf.subarray(0, inCluster - start));
    if (inCluster + src.length < end)
      this.readCluster(e, guestCluster, inCluster + src.length, buf.subarray(inCluster + src.length - start));
    buf.set(src, inCluster - start);
    let host = e.hostOffset;
    if (!hasHost(e) || !this.ownsExclusively(e)) {
      this.map.slotForWrite(guestCluster);
      const fresh = this.allocData(guestCluster);
      if (hasHost(e)) {
        // Shared with a snapshot: the new cluster starts as a copy of the old one.
        const old = new Uint8Array(this.clusterSize);
        this.readData(old, host, guestCluster * this.clusterSize);
        this.writeData(old, fresh, guestCluster * this.clusterSize);
        this.releaseEntry(e);
      }
      host = fresh;
    }
    this.writeData(buf, host + start, guestCluster * this.clusterSize + start);
    const mask = subclusterMask(first, last);
    this.setEntry(guestCluster, {
      type: ClusterType.Normal,
      hostOffset: host,
      copied: true,
      allocBitmap: (e.allocBitmap | mask) >>> 0,
      zeroBitmap: (e.zeroBitmap & ~mask) >>> 0,
    });
  }

  private ownsExclusively(e: L2Entry): boolean {
    // Data file clusters are not refcounted; each belongs to exactly one guest cluster.
    return e.copied || this.map.dataFile || this.rc.get(e.hostOffset / this.clusterSize) === 1;
  }

  /**
   * A host cluster for guest data. With an external data file, QEMU maps guest cluster N to host
   * offset N * cluster_size of the data file, and the qcow2 refcounts do not cover it.
   */
  private allocData(guestCluster: number): number {
    return this.map.dataFile ? guestCluster * this.clusterSize : this.alloc.alloc(1);
  }

  private requireCipher(): DataCipher | undefined {
    if (this.header.cryptMethod !== C.QCOW_CRYPT_NONE && !this.cipher) {
      throw new Qcow2Error(
        'MISSING_SECRET',
        `Image '${this.filename}' is encrypted: a key secret is needed (encrypt.key-secret)`,
        { filename: this.filename },
      );
    }
    return this.cipher;
  }

  /** Read guest data from a host offset, decrypting whole sectors as needed. */
  private readData(dst: Uint8Array, host: number, guest: number): void {
    const cipher = this.requireCipher();
    if (!cipher) {
      this.data.read(dst, host);
      return;
    }
    const S = C.SECTOR_SIZE;
    const head = host % S;
    const start = host - head;
    const buf = new Uint8Array(Math.ceil((head + dst.length) / S) * S);
    this.data.read(buf, start);
    cipher.decrypt(buf, start, guest - head);
    dst.set(buf.subarray(head, head + dst.length));
  }

  /** Write guest data at a host offset, encrypting whole sectors (read-modify-write at the edges). */
  private writeData(src: Uint8Array, host: number, guest: number): void {
    const cipher = this.requireCipher();
    if (!cipher) {
      this.data.write(src, host);
      return;
    }
    const S = C.SECTOR_SIZE;
    const head = host % S;
    const start = host - head;
    const buf = new Uint8Array(Math.ceil((head + src.length) / S) * S);
    if (head !== 0 || buf.length !== src.length) this.readData(buf, start, guest - head);
    buf.set(src, head);
    cipher.encrypt(buf, start, guest - head);
    this.data.write(buf, start);
  }

  private setEntry(guestCluster: number, w: L2Write): void {
    const slot = this.map.slotForWrite(guestCluster);
    this.map.setEntry(slot, w);
  }

  /** Drop the reference an L2 entry holds (deferred until the tables are on disk). */
  private releaseEntry(e: L2Entry): void {
    if (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) {
      if (!this.map.dataFile) this.freeCluster(e.hostOffset);
    } else if (e.type === ClusterType.Compressed) {
      const cs = this.clusterSize;
      const first = Math.floor(e.hostOffset / cs);
      const last = Math.floor((e.hostOffset + e.compressedLength - 1) / cs);
      for (let c = first; c <= last; c++) this.rc.decrement(c, 1);
    }
  }

  private freeCluster(offset: number): void {
    this.rc.decrement(offset / this.clusterSize, 1);
  }

  writeZeroes(offset: number, length: number, opts: { unmap?: boolean } = {}): void {
    this.checkOpen(true);
    this.checkRange(offset, length);
    const cs = this.clusterSize;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const guestCluster = Math.floor(pos / cs);
      const inCluster = pos - guestCluster * cs;
      const clusterEnd = Math.min((guestCluster + 1) * cs, this.size);
      const n = Math.min(clusterEnd, end) - pos;
      const whole = inCluster === 0 && pos + n === clusterEnd;
      if (whole && this.zeroWholeCluster(guestCluster, opts.unmap ?? false)) {
        // done by metadata
      } else if (this.extendedL2) {
        this.zeroSubclusters(guestCluster, inCluster, n);
      } else {
        const e = this.map.lookup(guestCluster);
        const already =
          e.type === ClusterType.ZeroPlain ||
          e.type === ClusterType.ZeroAlloc ||
          (e.type === ClusterType.Unallocated && !this.backing);
        if (!already) this.writeCluster(guestCluster, inCluster, new Uint8Array(n));
      }
      pos += n;
    }
    this.inflated = undefined;
  }

  /** Extended L2: whole subclusters get the zero bit; partly covered ones are written with zeros. */
  private zeroSubclusters(guestCluster: number, inCluster: number, n: number): void {
    const sc = this.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
    const e = this.map.lookup(guestCluster);
    const first = Math.ceil(inCluster / sc);
    const end = Math.floor((inCluster + n) / sc);
    const clusterEnd = Math.min(this.clusterSize, this.size - guestCluster * this.clusterSize);
    const lastEnd = inCluster + n === clusterEnd ? Math.ceil(clusterEnd / sc) : end; // a partial last subcluster at the disk end
    if (e.type === ClusterType.Compressed || lastEnd <= first) {
      this.writeCluster(guestCluster, inCluster, new Uint8Array(n));
      return;
    }
    const mask = subclusterMask(first, lastEnd - 1);
    this.setEntry(guestCluster, {
      type: hasHost(e) ? ClusterType.Normal : ClusterType.ZeroPlain,
      hostOffset: e.hostOffset,
      copied: hasHost(e) && this.ownsExclusively(e),
      allocBitmap: (e.allocBitmap & ~mask) >>> 0,
      zeroBitmap: (e.zeroBitmap | mask) >>> 0,
    });
    if (inCluster < first * sc)
      this.writeCluster(guestCluster, inCluster, new Uint8Array(first * sc - inCluster));
    const tail = Math.min(lastEnd * sc, clusterEnd);
    if (inCluster + n > tail) this.writeCluster(guestCluster, tail, new Uint8Array(inCluster + n - tail));
  }

  /** The L2 entry of a cluster that reads as zeros and owns nothing. */
  private plainZeroEntry(): L2Write {
    return this.extendedL2
      ? {
          type: ClusterType.ZeroPlain,
          hostOffset: 0,
          copied: false,
          allocBitmap: 0,
          zeroBitmap: ALL_SUBCLUSTERS,
        }
      : { type: ClusterType.ZeroPlain, hostOffset: 0, copied: false };
  }

  /** Turn a whole guest cluster into zeros through metadata; false when the layout cannot. */
  private zeroWholeCluster(guestCluster: number, unmap: boolean): boolean {
    const e = this.map.lookup(guestCluster);
    if (this.header.version < 3) {
      // v2 has no zero flag: without a backing file an unallocated cluster reads as zeros.
      if (this.backing) return false;
      if (e.type === ClusterType.Unallocated) return true;
      this.releaseEntry(e);
      this.setEntry(guestCluster, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
      return true;
    }
    if (this.extendedL2) {
      // A zero cluster is an all-ones zero bitmap; the host cluster is kept unless unmapping.
      if (e.type === ClusterType.Normal && !unmap && this.ownsExclusively(e)) {
        this.setEntry(guestCluster, {
          type: ClusterType.Normal,
          hostOffset: e.hostOffset,
          copied: true,
          zeroBitmap: ALL_SUBCLUSTERS,
        });
      } else {
        if (!hasHost(e) && e.type !== ClusterType.Compressed && e.zeroBitmap === ALL_SUBCLUSTERS) return true;
        this.releaseEntry(e);
        this.setEntry(guestCluster, this.plainZeroEntry());
      }
      return true;
    }
    if (e.type === ClusterType.ZeroPlain) return true;
    if (e.type === ClusterType.ZeroAlloc && !unmap) return true;
    // QEMU (zero_in_l2_slice): keep an exclusively owned host cluster as a preallocated zero
    // cluster unless unmapping is allowed; anything else becomes a plain zero cluster.
    if (
      (e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc) &&
      !unmap &&
      this.ownsExclusively(e)
    ) {
      this.setEntry(guestCluster, { type: ClusterType.ZeroAlloc, hostOffset: e.hostOffset, copied: true });
      return true;
    }
    this.releaseEntry(e);
    this.setEntry(guestCluster, this.plainZeroEntry());
    return true;
  }

  writeCompressed(offset: number, data: Uint8Array): void {
    this.checkOpen(true);
    this.checkRange(offset, data.length);
    const cs = this.clusterSize;
    if (offset % cs !== 0 || (data.length % cs !== 0 && offset + data.length !== this.size)) {
      throw new ArgumentError('UNALIGNED_COMPRESSED_WRITE', 'Compressed writes must cover whole clusters', {
        offset,
        length: data.length,
      });
    }
    if (this.data !== this.device) {
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
    for (let done = 0; done < data.length; done += cs) {
      const guestCluster = (offset + done) / cs;
      let cluster = data.subarray(done, done + cs);
      if (cluster.length < cs) {
        const padded = new Uint8Array(cs);
        padded.set(cluster);
        cluster = padded;
      }
      this.writeCompressedCluster(guestCluster, cluster);
    }
    this.inflated = undefined;
  }

  private writeCompressedCluster(guestCluster: number, cluster: Uint8Array): void {
    const packed = this.codec.compress(cluster);
    if (!packed) {
      // Does not compress below a cluster: stored uncompressed (QEMU's rule).
      this.writeCluster(guestCluster, 0, cluster);
      return;
    }
    const e = this.map.lookup(guestCluster);
    this.map.slotForWrite(guestCluster);
    const host = this.allocBytes(packed.length);
    this.data.write(packed, host);
    const sectors = Math.floor((host + packed.length - 1) / C.SECTOR_SIZE) - Math.floor(host / C.SECTOR_SIZE);
    this.releaseEntry(e);
    this.setEntry(guestCluster, { type: ClusterType.Compressed, hostOffset: host, copied: false, sectors });
  }

  /** Byte-granular allocation for compressed data, packing into the last partly used cluster. */
  private packCursor = 0;
  private allocBytes(n: number): number {
    const cs = this.clusterSize;
    const cur = this.packCursor;
    const curCluster = Math.floor(cur / cs);
    if (
      cur !== 0 &&
      cur % cs !== 0 &&
      (cur % cs) + n <= cs &&
      this.rc.get(curCluster) > 0 &&
      !this.rc.wouldOverflow(curCluster, 1)
    ) {
      // Share the current host cluster: one more reference for this compressed range.
      this.rc.increment(Math.floor(cur / cs), 1);
      this.packCursor = cur + n;
      return cur;
    }
    const clusters = Math.ceil(n / cs);
    const host = this.alloc.alloc(clusters);
    this.packCursor = host + n;
    return host;
  }

  discard(offset: number, length: number): void {
    this.checkOpen(true);
    this.checkRange(offset, length);
    const cs = this.clusterSize;
    let first = Math.ceil(offset / cs);
    let end = Math.floor((offset + length) / cs);
    // The partial last cluster of a disk whose size is not cluster aligned counts as whole.
    if (offset + length === this.size && this.size % cs !== 0 && offset <= end * cs)
      end = Math.ceil(this.size / cs);
    if (offset % cs !== 0 && first > end) first = end;
    for (let c = first; c < end; c++) this.discardCluster(c);
    this.inflated = undefined;
  }

  /** QEMU's discard_in_l2_slice with full_discard=false. */
  private discardCluster(guestCluster: number): void {
    const e = this.map.lookup(guestCluster);
    const allocated =
      e.type === ClusterType.Normal || e.type === ClusterType.ZeroAlloc || e.type === ClusterType.Compressed;
    if (!this.backing && !allocated) return;
    if (e.type === ClusterType.ZeroPlain) return;
    // v3 marks the cluster as zero; v2 can only unmap it (the backing file shows through).
    if (this.header.version < 3) {
      // v2 has no zero flag: unmapping would expose the backing file, so QEMU (7.2) leaves the
      // data in place when there is one (its discard returns ENOTSUP).
      if (e.type === ClusterType.Unallocated || this.backing) return;
      this.releaseEntry(e);
      this.setEntry(guestCluster, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
      return;
    }
    if (
      this.extendedL2 &&
      !hasHost(e) &&
      e.type !== ClusterType.Compressed &&
      e.zeroBitmap === ALL_SUBCLUSTERS
    )
      return;
    this.releaseEntry(e);
    this.setEntry(guestCluster, this.plainZeroEntry());
  }

  // ---------------------------------------------------------------- resize

  resize(newSize: number, opts: { shrink?: boolean } = {}): void {
    this.resizeTo(newSize, opts.shrink ?? false, true);
  }

  /** `hideBacking`: a grown area reads as zeros, not as the backing file (false at creation). */
  private resizeTo(newSize: number, shrink: boolean, hideBacking: boolean): void {
    this.checkOpen(true);
    if (!Number.isSafeInteger(newSize) || newSize < 0)
      throw new ArgumentError('BAD_SIZE', `Invalid size ${newSize}`, { size: newSize });
    // qcow2_co_truncate's rule (qemu-img create rounds up instead; create does that itself).
    if (newSize % 512 !== 0)
      throw new ArgumentError('BAD_SIZE', 'The new size must be a multiple of 512', { size: newSize });
    const old = this.size;
    if (newSize === old) return;
    if (this.header.nbSnapshots > 0 && this.header.version < 3) {
      throw new UnsupportedError('RESIZE_WITH_SNAPSHOTS', "Can't resize a v2 image which has snapshots", {});
    }
    const needed = l1EntriesFor(newSize, this.clusterBits, this.extendedL2);
    if (needed > C.QCOW_MAX_L1_SIZE / 8)
      throw new ArgumentError('IMAGE_TOO_BIG', `Image size ${newSize} is too large`, { size: newSize });
    if (newSize < old) {
      if (!shrink) {
        throw new ArgumentError(
          'SHRINK_NOT_ALLOWED',
          'Use the --shrink option to perform a shrink operation.',
          { size: newSize },
        );
      }
      const cs = this.clusterSize;
      // Free every cluster wholly beyond the new end, then zero the tail of the last cluster so
      // that growing again later reads zeros there.
      for (let c = Math.ceil(newSize / cs); c < Math.ceil(old / cs); c++) {
        const e = this.map.lookup(c);
        if (e.type !== ClusterType.Unallocated) {
          this.releaseEntry(e);
          this.setEntry(c, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
        }
      }
      if (newSize % cs !== 0) {
        const c = Math.floor(newSize / cs);
        const e = this.map.lookup(c);
        if (e.type !== ClusterType.Unallocated && e.type !== ClusterType.ZeroPlain) {
          const keep = this.readWholeCluster(c, e).subarray(0, newSize % cs);
          const full = new Uint8Array(cs);
          full.set(keep);
          this.writeCluster(c, 0, full);
        }
      }
      // L2 tables wholly beyond the end are freed, as qcow2_shrink_l1_table does.
      for (let i = needed; i < this.map.l1Size; i++) {
        const le = readL1(this.map.l1, i);
        if (le.l2Offset !== 0) {
          this.freeCluster(le.l2Offset);
          writeL1(this.map.l1, i, 0, false);
          this.map.l1Dirty = true;
        }
      }
    } else if (needed > this.map.l1Size) {
      this.growL1(needed);
    }
    // Growing needs nothing else without a backing file: the tail of the old last cluster was
    // zeroed when the disk shrank (QEMU 7.2 leaves it: corpus/qemu-stale-tail-after-shrink-grow).
    this.header.size = newSize;
    this.headerDirty = true;
    if (hideBacking && newSize > old && this.backing && this.backing.size > old) {
      // The new area must read as zeros, not as the backing file's data behind it (QEMU's
      // bdrv_co_truncate zero-fills it in that case).
      this.writeZeroes(old, newSize - old);
    }
    if (newSize > old && (this.header.autoclearFeatures & C.AUTOCLEAR_DATA_FILE_RAW) !== 0n) {
      // A raw data file stays a plain image of the disk: grow it and map the new clusters.
      if (this.data.size() < newSize) this.data.truncate(newSize);
      this.preallocate('metadata');
    }
    this.flush();
  }

  /** L1 growth (qcow2_grow_l1_table): new copy, flush, switch the header, free the old one. */
  private growL1(entries: number): void {
    const cs = this.clusterSize;
    const bytes = alignUp(entries * 8, cs);
    const table = new Uint8Array(entries * 8);
    table.set(this.map.l1);
    // Everything the new table points at must be on disk first.
    this.flushTables();
    const offset = this.alloc.alloc(bytes / cs);
    this.rc.writeBack();
    this.device.flush();
    const padded = new Uint8Array(bytes);
    padded.set(table);
    this.device.write(padded, offset);
    this.device.flush();
    const oldOffset = this.map.l1Offset;
    const oldClusters = Math.ceil((this.map.l1Size * 8) / cs);
    this.header.l1TableOffset = offset;
    this.header.l1Size = entries;
    this.writeHeader();
    this.device.flush();
    this.map.replaceL1(table, offset);
    if (oldOffset !== 0) for (let c = 0; c < oldClusters; c++) this.rc.decrement(oldOffset / cs + c, 1);
  }

  private preallocate(mode: 'metadata' | 'falloc' | 'full'): void {
    const cs = this.clusterSize;
    const clusters = Math.ceil(this.size / cs);
    for (let c = 0; c < clusters; c++) {
      const e = this.map.lookup(c);
      if (e.type !== ClusterType.Unallocated) continue;
      const host = this.allocData(c);
      this.setEntry(c, {
        type: ClusterType.Normal,
        hostOffset: host,
        copied: true,
        allocBitmap: ALL_SUBCLUSTERS,
      });
    }
    this.flush();
    const end = this.alloc.endCluster() * cs;
    if (mode === 'full') {
      const zeros = new Uint8Array(cs);
      for (let off = this.device.size(); off < end; off += cs)
        this.device.write(zeros.subarray(0, Math.min(cs, end - off)), off);
    } else if (this.device.size() < end) this.device.truncate(end);
  }

  // ---------------------------------------------------------------- status

  blockStatus(offset: number, length: number): BlockStatus {
    this.checkOpen(false);
    this.checkRange(offset, length);
    const cs = this.clusterSize;
    const first = this.statusOfCluster(Math.floor(offset / cs), offset);
    let len = Math.min(first.length, length);
    while (len < length) {
      const pos = offset + len;
      const next = this.statusOfCluster(Math.floor(pos / cs), pos);
      const contiguous =
        next.depth === first.depth &&
        next.present === first.present &&
        next.zero === first.zero &&
        next.data === first.data &&
        next.compressed === first.compressed &&
        next.filename === first.filename &&
        (first.hostOffset === undefined
          ? next.hostOffset === undefined
          : next.hostOffset === first.hostOffset + len);
      if (!contiguous) break;
      len = Math.min(len + next.length, length);
    }
    return { ...first, offset, length: len };
  }

  private statusOfCluster(guestCluster: number, pos: number): BlockStatus {
    const st = this.rawStatusOfCluster(guestCluster, pos);
    // Encrypted data has no meaningful host offset to report (QEMU sets no OFFSET_VALID).
    if (this.header.cryptMethod !== C.QCOW_CRYPT_NONE && st.depth === 0) delete st.hostOffset;
    return st;
  }

  private rawStatusOfCluster(guestCluster: number, pos: number): BlockStatus {
    const e = this.map.lookup(guestCluster);
    const inCluster = pos - guestCluster * this.clusterSize;
    const base = {
      offset: pos,
      length: this.clusterSize - inCluster,
      depth: 0,
      filename: this.filename,
      compressed: false,
    };
    if (this.extendedL2 && e.type !== ClusterType.Compressed) {
      const sc = this.clusterSize / C.SUBCLUSTERS_PER_CLUSTER;
      const i = Math.floor(inCluster / sc);
      const sub = { ...base, length: (i + 1) * sc - inCluster };
      switch (subclusterType(e, i)) {
        case SubclusterType.Normal:
          return {
            ...sub,
            present: true,
            zero: false,
            data: true,
            hostOffset: e.hostOffset + inCluster,
            filename: this.data.name,
          };
        case SubclusterType.ZeroAlloc:
          return {
            ...sub,
            present: true,
            zero: true,
            data: false,
            hostOffset: e.hostOffset + inCluster,
            filename: this.data.name,
          };
        case SubclusterType.ZeroPlain:
          return { ...sub, present: true, zero: true, data: false };
        case SubclusterType.UnallocatedPlain:
          return this.backingStatus(sub, pos);
        case SubclusterType.UnallocatedAlloc: {
          // QEMU reports the host offset of an unallocated subcluster in an allocated cluster
          // (when nothing below provides the data).
          const st = this.backingStatus(sub, pos);
          return st.depth === 0 && !st.present && !this.backing
            ? { ...st, hostOffset: e.hostOffset + inCluster, filename: this.data.name }
            : st;
        }
        default:
          throw new CorruptionError(
            'CORRUPT_SUBCLUSTER',
            `Invalid subcluster ${i} state in the L2 entry of guest cluster ${guestCluster}`,
            e.hostOffset,
            { guestCluster, subcluster: i },
          );
      }
    }
    switch (e.type) {
      case ClusterType.Normal:
        return {
          ...base,
          present: true,
          zero: false,
          data: true,
          hostOffset: e.hostOffset + inCluster,
          filename: this.data.name,
        };
      case ClusterType.ZeroAlloc:
        // qemu-img map reports the host offset of a preallocated zero cluster.
        return {
          ...base,
          present: true,
          zero: true,
          data: false,
          hostOffset: e.hostOffset + inCluster,
          filename: this.data.name,
        };
      case ClusterType.ZeroPlain:
        return { ...base, present: true, zero: true, data: false };
      case ClusterType.Compressed:
        return { ...base, present: true, zero: false, data: true, compressed: true };
      case ClusterType.Unallocated:
        return this.backingStatus(base, pos);
    }
  }

  private backingStatus(
    base: { offset: number; length: number; depth: number; filename: string; compressed: boolean },
    pos: number,
  ): BlockStatus {
    const b = this.backing;
    if (!b) return { ...base, present: false, zero: true, data: false };
    // Past the end of the backing file: reads as zeros, reported at this layer's depth (qemu-img map).
    if (pos >= b.size) return { ...base, present: false, zero: true, data: false };
    const s = b.blockStatus(pos, Math.min(base.length, b.size - pos));
    return { ...s, offset: pos, length: Math.min(base.length, s.length), depth: s.depth + 1 };
  }

  // ---------------------------------------------------------------- backing files

  /**
   * Point the image at another backing file (or none) without touching guest data: what
   * `qemu-img rebase -u` does. The name is stored as given and resolved from the image's directory.
   */
  setBacking(name: string | undefined, format?: 'qcow2' | 'raw', opts: { mustExist?: boolean } = {}): void {
    this.checkOpen(true);
    let next: GuestDisk | undefined;
    try {
      next =
        name === undefined
          ? undefined
          : openImage(this.resolveRelative(name), {
              format,
              readOnly: true,
              chain: [path.resolve(this.filename)],
            });
    } catch (e) {
      // `rebase -u` may name a file that does not exist (yet); a loop is refused regardless.
      if ((opts.mustExist ?? true) || (e instanceof Qcow2Error && e.code === 'BACKING_LOOP')) throw e;
    }
    this.header.backingFile = name;
    setExtension(
      this.header,
      C.EXT_BACKING_FORMAT,
      name !== undefined && format ? textEncoder.encode(format) : undefined,
    );
    this.flush();
    this.writeHeader();
    this.device.flush();
    this.backing?.close();
    this.backing = next;
  }

  private resolveRelative(name: string): string {
    return path.resolve(path.dirname(this.filename), name);
  }

  /**
   * `qemu-img commit`: write everything this image holds into its backing file (growing it when
   * it is shorter), then empty this image so that the backing file shows through.
   */
  commit(): void {
    this.checkOpen(true);
    const name = this.header.backingFile;
    if (name === undefined)
      throw new Qcow2Error('NO_BACKING', 'Image does not have a backing file', { filename: this.filename });
    const fmt = backingFormat(this.header);
    const base = openImage(this.resolveRelative(name), {
      format: fmt === 'raw' || fmt === 'qcow2' ? fmt : undefined,
      chain: [path.resolve(this.filename)],
    });
    try {
      if (base.size < this.size) base.resize(this.size);
      const cs = this.clusterSize;
      for (let c = 0; c < Math.ceil(this.size / cs); c++) {
        const e = this.map.lookup(c);
        if (e.type === ClusterType.Unallocated) continue;
        const off = c * cs;
        const len = Math.min(cs, this.size - off);
        if (e.type === ClusterType.ZeroPlain || e.type === ClusterType.ZeroAlloc) base.writeZeroes(off, len);
        else base.write(off, this.read(off, len));
      }
      base.flush();
    } finally {
      base.close();
    }
    this.makeEmpty();
    // Reopen the backing file: its content changed under us.
    this.backing?.close();
    this.backing = openImage(this.resolveRelative(name), {
      format: fmt === 'raw' || fmt === 'qcow2' ? fmt : undefined,
      readOnly: true,
      chain: [path.resolve(this.filename)],
    });
  }

  /** Unmap every cluster (qcow2_make_empty's full discard): the backing file shows through. */
  makeEmpty(): void {
    this.checkOpen(true);
    const cs = this.clusterSize;
    for (let c = 0; c < Math.ceil(this.size / cs); c++) {
      if (this.map.l2OffsetAt(this.map.split(c)[0]) === 0) {
        c = (this.map.split(c)[0] + 1) * this.map.l2Entries - 1;
        continue;
      }
      const e = this.map.lookup(c);
      if (e.type === ClusterType.Unallocated) continue;
      this.releaseEntry(e);
      this.setEntry(c, { type: ClusterType.Unallocated, hostOffset: 0, copied: false });
    }
    this.flush();
    this.inflated = undefined;
  }

  // ---------------------------------------------------------------- snapshots

  listSnapshots(): SnapshotInfo[] {
    this.checkOpen(false);
    return this.snapshots.map((e) => ({
      id: e.id,
      name: e.name,
      vmStateSize: e.vmStateSizeLarge ?? e.vmStateSize,
      dateSec: e.dateSec,
      dateNsec: e.dateNsec,
      vmClockNsec: Number(e.vmClockNsec),
      diskSize: e.diskSize,
      icount: e.icount === undefined || e.icount < 0n ? undefined : Number(e.icount),
      l1TableOffset: e.l1TableOffset,
      l1Size: e.l1Size,
    }));
  }

  private snapshotIndex(idOrName: string): number {
    const i = findSnapshot(this.snapshots, idOrName);
    if (i < 0)
      throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `Can't find snapshot '${idOrName}'`, { snapshot: idOrName });
    return i;
  }

  private refuseSnapshotsWithDataFile(): void {
    if (this.data !== this.device) {
      throw new UnsupportedError(
        'SNAPSHOT_DATA_FILE',
        'Internal snapshots are not supported with an external data file',
        {},
      );
    }
  }

  /** Raise refcounts for every reference of a tree, after checking none would overflow. */
  private raiseTree(counts: Map<number, number>): void {
    for (const [c, n] of counts) {
      if (this.rc.wouldOverflow(c, n)) throw new RefcountOverflowError(c, this.rc.max);
    }
    for (const [c, n] of counts) this.rc.increment(c, n);
  }

  createSnapshot(name: string, opts: { id?: string; vmStateSize?: number } = {}): SnapshotInfo {
    this.checkOpen(true);
    this.refuseSnapshotsWithDataFile();
    const id = opts.id ?? newSnapshotId(this.snapshots);
    if (this.snapshots.some((e) => e.id === id)) {
      throw new Qcow2Error('SNAPSHOT_EXISTS', `Snapshot with id '${id}' already exists`, { id });
    }
    this.flush();
    const cs = this.clusterSize;
    // Check for refcount overflow before anything changes: a refused snapshot leaves the image
    // exactly as it was (no cluster allocated, no refcount raised).
    const counts = countTreeReferences(this.map, this.map.l1, this.map.l1Offset);
    for (const [c, n] of counts) {
      if (this.rc.wouldOverflow(c, n)) throw new RefcountOverflowError(c, this.rc.max);
    }
    const l1Size = this.map.l1Size;
    let l1Offset = 0;
    if (l1Size > 0) {
      const bytes = alignUp(l1Size * 8, cs);
      l1Offset = this.alloc.alloc(bytes / cs);
      const copy = new Uint8Array(bytes);
      copy.set(this.map.l1);
      this.device.write(copy, l1Offset);
    }
    this.raiseTree(counts);
    this.updateCopiedFlags();
    const now = Date.now();
    const entry: SnapshotEntry = {
      l1TableOffset: l1Offset,
      l1Size,
      id,
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1_000_000,
      vmClockNsec: 0n,
      vmStateSize: opts.vmStateSize ?? 0,
      vmStateSizeLarge: opts.vmStateSize ?? 0,
      diskSize: this.size,
      icount: 0n, // what qemu-img snapshot -c stores (its snapshot info is zero-initialised)
      unknownExtraData: new Uint8Array(0),
    };
    // Refcounts, then tables, then the new snapshot table and the header that points at it.
    this.flush();
    this.writeSnapshotTable([...this.snapshots, entry]);
    this.flush();
    return this.listSnapshots().find((s) => s.id === id)!;
  }

  applySnapshot(idOrName: string): void {
    this.checkOpen(true);
    this.refuseSnapshotsWithDataFile();
    const sn = this.snapshots[this.snapshotIndex(idOrName)]!;
    this.flush();
    const snL1 = readSnapshotL1(this.device, sn);
    if (sn.l1Size > this.map.l1Size) this.growL1(sn.l1Size);
    // The active tree's references move from the old tree to the snapshot's: clusters both reach
    // keep their refcount (QEMU raises then lowers them, and so refuses a revert whenever a narrow
    // refcount is full: we only check the net change).
    const gained = countTreeReferences(this.map, snL1, sn.l1TableOffset);
    const lost = countTreeReferences(this.map, this.map.l1, this.map.l1Offset);
    const up = new Map<number, number>();
    const down = new Map<number, number>();
    for (const [c, n] of gained) {
      const net = n - (lost.get(c) ?? 0);
      if (net > 0) up.set(c, net);
    }
    for (const [c, n] of lost) {
      const net = n - (gained.get(c) ?? 0);
      if (net > 0) down.set(c, net);
    }
    // 1. what the snapshot's tree gains, before the active L1 points at it
    this.raiseTree(up);
    // 2. the active L1 becomes a copy of the snapshot's, in place
    const newL1 = new Uint8Array(this.map.l1.length);
    newL1.set(snL1);
    this.map.replaceL1(newL1, this.map.l1Offset);
    this.map.l1Dirty = true;
    if (this.header.version >= 3 && sn.diskSize !== undefined) {
      this.header.size = sn.diskSize;
      this.headerDirty = true;
    }
    this.flush();
    // 3. what only the old active tree held is released once the new L1 is on disk
    for (const [c, n] of down) this.rc.decrement(c, n);
    this.flush();
    this.updateCopiedFlags();
    this.flush();
    this.inflated = undefined;
    this.packCursor = 0;
  }

  deleteSnapshot(idOrName: string): void {
    this.checkOpen(true);
    this.refuseSnapshotsWithDataFile();
    const index = this.snapshotIndex(idOrName);
    const sn = this.snapshots[index]!;
    this.flush();
    const snL1 = readSnapshotL1(this.device, sn);
    // Drop the table entry first: from then on nothing on disk refers to the snapshot's tree.
    this.writeSnapshotTable(this.snapshots.filter((_, i) => i !== index));
    for (const [c, n] of countTreeReferences(this.map, snL1, sn.l1TableOffset)) this.rc.decrement(c, n);
    const cs = this.clusterSize;
    for (let c = 0; c < Math.ceil((sn.l1Size * 8) / cs); c++) this.rc.decrement(sn.l1TableOffset / cs + c, 1);
    this.flush();
    this.updateCopiedFlags();
    this.flush();
    this.packCursor = 0;
  }

  readSnapshot(idOrName: string, offset: number, length: number): Uint8Array {
    this.checkOpen(false);
    const sn = this.snapshots[this.snapshotIndex(idOrName)]!;
    const size = sn.diskSize ?? this.size;
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new ArgumentError(
        'OUT_OF_RANGE',
        `Request out of range: offset ${offset}, length ${length}, snapshot size ${size}`,
        { offset, length, size },
      );
    }
    const l1 = readSnapshotL1(this.device, sn);
    const out = new Uint8Array(length);
    const cs = this.clusterSize;
    for (let done = 0; done < length;) {
      const pos = offset + done;
      const gc = Math.floor(pos / cs);
      const n = Math.min(cs - (pos - gc * cs), length - done);
      this.readCluster(
        this.map.lookupIn(l1, sn.l1TableOffset, gc),
        gc,
        pos - gc * cs,
        out.subarray(done, done + n),
      );
      done += n;
    }
    return out;
  }

  /** COPIED (bit 63) on the active L1 and L2 entries exactly where the refcount is 1. */
  private updateCopiedFlags(): void {
    const cs = this.clusterSize;
    for (let i = 0; i < this.map.l1Size; i++) {
      const l2 = this.map.l2OffsetAt(i);
      if (l2 === 0) continue;
      const l2Copied = this.rc.get(l2 / cs) === 1;
      if (readL1(this.map.l1, i).copied !== l2Copied) {
        writeL1(this.map.l1, i, l2, l2Copied);
        this.map.l1Dirty = true;
      }
      const table = this.map.cache.get(l2);
      let dirty = false;
      for (let j = 0; j < this.map.l2Entries; j++) {
        const e = readL2(table, j, this.clusterBits, this.extendedL2, this.map.dataFile);
        if (e.type !== ClusterType.Normal && e.type !== ClusterType.ZeroAlloc) continue;
        const want = this.rc.get(e.hostOffset / cs) === 1;
        if (e.copied === want) continue;
        writeL2(table, j, this.clusterBits, this.extendedL2, {
          type: e.type,
          hostOffset: e.hostOffset,
          copied: want,
          allocBitmap: e.allocBitmap,
          zeroBitmap: e.zeroBitmap,
        });
        dirty = true;
      }
      if (dirty) this.map.cache.markDirty(l2);
    }
  }

  /** Crash-safe table rewrite: new table, flush, switch the header, free the old table. */
  private writeSnapshotTable(entries: SnapshotEntry[]): void {
    const cs = this.clusterSize;
    const bytes = encodeSnapshotTable(entries, this.header.version);
    let offset = 0;
    if (entries.length > 0) {
      const size = alignUp(Math.max(bytes.length, 1), cs);
      offset = this.alloc.alloc(size / cs);
      const padded = new Uint8Array(size);
      padded.set(bytes);
      this.device.write(padded, offset);
    }
    this.flushTables();
    const oldOffset = this.header.nbSnapshots > 0 ? this.header.snapshotsOffset : 0;
    const oldClusters = Math.ceil(snapshotTableSize(this.snapshots) / cs);
    this.header.nbSnapshots = entries.length;
    this.header.snapshotsOffset = offset;
    this.writeHeader();
    this.device.flush();
    if (oldOffset !== 0) for (let c = 0; c < oldClusters; c++) this.rc.decrement(oldOffset / cs + c, 1);
    this.snapshots = entries;
    this.snapshotTableBytes = bytes.length;
  }

  // ---------------------------------------------------------------- corruption

  /** Which fixed metadata structure occupies a host cluster (for the allocator's overlap check). */
  private metadataAt(c: number): string | undefined {
    const cs = this.clusterSize;
    const within = (off: number, bytes: number): boolean =>
      bytes > 0 && c >= off / cs && c < Math.ceil((off + bytes) / cs);
    const h = this.header;
    if (c === 0) return 'header';
    if (within(this.rc.tableOffset, this.rc.table.length)) return 'refcount table';
    if (within(this.map.l1Offset, this.map.l1Size * 8)) return 'active L1 table';
    if (h.nbSnapshots > 0 && within(h.snapshotsOffset, this.snapshotTableBytes)) return 'snapshot table';
    const crypto = cryptoHeaderPointer(h);
    if (crypto && within(crypto.offset, crypto.length)) return 'LUKS header';
    return undefined;
  }

  /**
   * QEMU's qcow2_signal_corruption: on a writable image, corrupt metadata found by any operation
   * sets the corrupt bit (incompatible bit 1) in the header and stops all further writes, so the
   * damage cannot spread. Only the header is written; cached tables are dropped unwritten.
   */
  signalCorruption(e: CorruptionError): void {
    if (this.readOnly || this.closed || this.corrupt) return;
    this.corrupt = e.message;
    try {
      this.header.incompatibleFeatures |= C.INCOMPAT_CORRUPT;
      this.writeHeader();
      this.device.flush();
    } catch {
      // the corruption report matters more than a failed header write
    }
  }

  // ---------------------------------------------------------------- flush / close

  private writeHeader(): void {
    const buf = new Uint8Array(Math.min(this.clusterSize, Math.max(4096, this.clusterSize)));
    buf.set(encodeHeader(this.header));
    this.device.write(buf, 0);
    this.headerDirty = false;
  }

  /** Steps 2–4 of the flush order (refcounts, L2, L1 and header). */
  private flushTables(): void {
    if (this.data !== this.device) this.data.flush();
    if (this.lazyDirty) {
      // The dirty bit covers refcounts that lag: no ordering between refcounts and tables.
      this.map.cache.setDependency(undefined);
    }
    if (this.rc.isDirty()) {
      this.rc.writeBack();
      this.device.flush();
    }
    if (this.map.cache.isDirty()) {
      this.map.cache.writeBack();
      this.device.flush();
    }
    if (this.map.l1Dirty || this.headerDirty) {
      this.map.writeL1Table();
      if (this.headerDirty) this.writeHeader();
      this.device.flush();
    }
  }

  /** Lazy refcounts: after a full flush the refcounts are exact, so the dirty bit can go. */
  private markClean(): void {
    if (!this.lazyDirty || this.corrupt || this.readOnly) return;
    this.header.incompatibleFeatures &= ~C.INCOMPAT_DIRTY;
    this.writeHeader();
    this.device.flush();
    this.lazyDirty = false;
  }

  flush(): void {
    if (this.closed || this.readOnly || this.corrupt) return;
    this.flushTables();
    // Step 5: nothing on disk points at these clusters any more.
    if (this.rc.hasPendingDecrements()) {
      for (const c of this.rc.applyDecrements()) {
        this.map.cache.discard(c * this.clusterSize);
        this.alloc.freed(c);
        if (this.packCursor !== 0 && Math.floor(this.packCursor / this.clusterSize) === c)
          this.packCursor = 0;
      }
      this.rc.writeBack();
      this.device.flush();
    }
    this.device.flush();
  }

  close(): void {
    if (this.closed) return;
    try {
      if (!this.corrupt) {
        this.flush();
        this.markClean();
      }
    } finally {
      this.closed = true;
      if (this.data !== this.device) this.data.close();
      this.backing?.close();
      this.device.close();
    }
  }
}

/**
 * Every public operation reports corruption it meets to signalCorruption (QEMU marks the image
 * corrupt wherever the driver detects it), then rethrows.
 */
type Method = (this: Qcow2Image, ...args: never[]) => unknown;
const GUARDED = [
  'read',
  'readInto',
  'write',
  'writeZeroes',
  'writeCompressed',
  'discard',
  'resize',
  'blockStatus',
  'createSnapshot',
  'applySnapshot',
  'deleteSnapshot',
  'readSnapshot',
  'commit',
  'makeEmpty',
  'flush',
] as const;
for (const name of GUARDED) {
  const proto = Qcow2Image.prototype as unknown as Record<string, Method>;
  const original = proto[name]!;
  proto[name] = function guarded(this: Qcow2Image, ...args: never[]): unknown {
    try {
      return original.apply(this, args);
    } catch (e) {
      if (e instanceof CorruptionError) this.signalCorruption(e);
      throw e;
    }
  };
}
