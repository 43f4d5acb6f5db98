/**
 * What the engine parts of one open image share: the devices, the geometry, the metadata writer
 * (and through it the refcounts, allocator and cluster map), the backing disk and the data cipher.
 * Plain state, no behaviour: each concern lives in its own module (data-path, cluster-ops,
 * block-status, snapshots, backing, encryption, bitmaps) and receives this.
 */
import type { GuestDisk } from '../api.ts';
import { codecFor, type ClusterCodec } from '../codecs/index.ts';
import * as C from '../format/constants.ts';
import type { Header } from '../format/header.ts';
import type { BlockDevice } from '../io/device.ts';
import type { Allocator } from './allocator.ts';
import type { ClusterMap } from './cluster-map.ts';
import type { MetadataWriter } from './metadata.ts';
import type { Refcounts } from './refcounts.ts';

/**
 * Encryption of guest data (qcow2.txt "crypt_method"): legacy AES derives each sector's IV from
 * the guest offset, LUKS from the host offset. Buffers are whole sectors, changed in place.
 */
export interface DataCipher {
  encrypt(buf: Uint8Array, hostOffset: number, guestOffset: number): void;
  decrypt(buf: Uint8Array, hostOffset: number, guestOffset: number): void;
}

export class ImageState {
  readonly clusterBits: number;
  readonly clusterSize: number;
  /** Extended L2 entries (incompatible bit 4): 32 subclusters per cluster. */
  readonly extendedL2: boolean;
  /** Set when the image is encrypted and a key was given (or created). */
  cipher: DataCipher | undefined;
  backing: GuestDisk | undefined;
  private codecCache: ClusterCodec | undefined;

  constructor(
    readonly device: BlockDevice,
    /** Where guest data lives: the image itself or its external data file. */
    readonly data: BlockDevice,
    readonly filename: string,
    readonly meta: MetadataWriter,
    backing: GuestDisk | undefined,
  ) {
    this.clusterBits = meta.header.clusterBits;
    this.clusterSize = 2 ** this.clusterBits;
    this.extendedL2 = (meta.header.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n;
    this.backing = backing;
  }

  get header(): Header {
    return this.meta.header;
  }

  /** Virtual disk size. */
  get size(): number {
    return this.meta.header.size;
  }

  get rc(): Refcounts {
    return this.meta.rc;
  }

  get alloc(): Allocator {
    return this.meta.alloc;
  }

  get map(): ClusterMap {
    return this.meta.map;
  }

  /** External data file: guest cluster N lives at N * cluster_size there, not refcounted. */
  get hasDataFile(): boolean {
    return this.data !== this.device;
  }

  get codec(): ClusterCodec {
    return (this.codecCache ??= codecFor(this.meta.header.compressionType));
  }
}
