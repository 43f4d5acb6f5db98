/**
 * What an image from a bug report tells a reproduction search: its layout (version, cluster
 * size, refcount width, features, size, encryption, whether it has a backing file) and what it
 * holds (snapshots, compressed, zero and data clusters), read through the diagnose walk. The
 * layout starts every search sequence; the contents weight the command mix.
 */
import { FileDevice } from '../../src/io/device.ts';
import { walkOwnership } from '../../src/diagnose/ownership.ts';
import { backingFormat } from '../../src/format/header.ts';
import * as C from '../../src/format/constants.ts';
import type { ImageLayout } from '../layout.ts';
import type { CommandKind } from '../arbitraries/command-kinds.ts';

export interface ImageProfile {
  layout: ImageLayout;
  snapshots: number;
  dataClusters: number;
  compressedClusters: number;
  zeroClusters: number;
  backingFile?: string;
}

export class NotAnImageError extends Error {}

export function profileImage(file: string): ImageProfile {
  const dev = FileDevice.open(file, { readOnly: true });
  try {
    const map = walkOwnership(dev);
    const h = map.header;
    if (!h)
      throw new NotAnImageError(`${file}: not a qcow2 image this search can start from (${map.headerError})`);
    let data = 0;
    let compressed = 0;
    let zero = 0;
    for (const owners of map.owners.values())
      for (const o of owners) {
        if (o.guest?.snapshot !== undefined) continue;
        if (o.kind === 'compressed') compressed += 1;
        else if (o.kind === 'data' && o.zero) zero += 1;
        else if (o.kind === 'data') data += 1;
      }
    const layout: ImageLayout = {
      compat: h.version === 2 ? '0.10' : '1.1',
      clusterBits: h.clusterBits,
      refcountBits: 2 ** h.refcountOrder,
      extendedL2: (h.incompatibleFeatures & C.INCOMPAT_EXTL2) !== 0n,
      compressionType: h.compressionType === C.COMPRESSION_ZSTD ? 'zstd' : 'zlib',
      lazyRefcounts: (h.compatibleFeatures & C.COMPAT_LAZY_REFCOUNTS) !== 0n,
      size: h.size,
      ...(h.cryptMethod === C.QCOW_CRYPT_AES ? { encrypt: 'aes' as const } : {}),
      ...(h.cryptMethod === C.QCOW_CRYPT_LUKS ? { encrypt: 'luks' as const } : {}),
      ...(h.backingFile
        ? {
            backing: {
              format: backingFormat(h) === 'raw' ? ('raw' as const) : ('qcow2' as const),
              size: h.size,
              writes: [],
            },
          }
        : {}),
    };
    return {
      layout,
      snapshots: map.snapshots.length,
      dataClusters: data,
      compressedClusters: compressed,
      zeroClusters: zero,
      backingFile: h.backingFile,
    };
  } finally {
    dev.close();
  }
}

/**
 * Command weights for a search aimed at this image: what it holds is made often (compressed
 * clusters → compressed writes; snapshots → snapshot commands; zero clusters → zero writes), and
 * what frees clusters (discard, zero writes with unmap) stays frequent, since most refcount damage
 * follows a free.
 */
export function searchWeights(p: ImageProfile): Partial<Record<CommandKind, number>> {
  return {
    write: 12,
    read: 2,
    discard: 10,
    'write-zeroes': p.zeroClusters > 0 ? 8 : 4,
    'compressed-write': p.compressedClusters > 0 ? 12 : 1,
    'snapshot-create': p.snapshots > 0 ? 4 : 0,
    'snapshot-apply': p.snapshots > 0 ? 2 : 0,
    'snapshot-delete': p.snapshots > 0 ? 2 : 0,
    flush: 1,
    reopen: 1,
    'resize-grow': 1,
    'resize-shrink': 1,
    'qemu-turn': 0,
    check: 0,
  };
}
