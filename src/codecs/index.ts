/**
 * Cluster codecs by header compression_type (qcow2.txt, header byte 104): 0 zlib, 1 zstd.
 * Both are synchronous; zstd's wasm runtime is instantiated on first use (see zstd-wasm.ts).
 */
import { HeaderError } from '../errors.ts';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD } from '../format/constants.ts';
import type { ClusterCodec } from './codec.ts';
import { ZlibCodec } from './zlib.ts';
import { ZstdCodec } from './zstd.ts';

export type { ClusterCodec, CodecType } from './codec.ts';
export { ZlibCodec } from './zlib.ts';
export { ZstdCodec, scanFrame } from './zstd.ts';

const zlibCodec = new ZlibCodec();
const zstdCodec = new ZstdCodec();

export function codecFor(compressionType: number): ClusterCodec {
  switch (compressionType) {
    case COMPRESSION_ZLIB:
      return zlibCodec;
    case COMPRESSION_ZSTD:
      return zstdCodec;
    default:
      throw new HeaderError(
        'UNKNOWN_COMPRESSION_TYPE',
        `Unknown compression type ${compressionType}`,
        'compression_type',
        compressionType,
      );
  }
}
