/**
 * The cluster-compression interface shared by the zlib and zstd codecs (qcow2.txt "Compressed
 * Clusters Descriptor"; header byte 104 chooses the codec).
 */
import { CorruptionError, type ErrorCode } from '../errors.ts';

export type CodecType = 'zlib' | 'zstd';

export interface ClusterCodec {
  readonly type: CodecType;
  /**
   * Compresses one whole cluster. Returns undefined when the result would be longer than
   * `cluster.length - 1` bytes: QEMU (qcow2_co_pwritev_compressed_task) gives the compressor an
   * output buffer of cluster_size - 1 bytes and writes the cluster uncompressed when it does not
   * fit, so a compressed cluster is always strictly shorter than a cluster.
   */
  compress(cluster: Uint8Array): Uint8Array | undefined;
  /**
   * Inflates exactly `clusterSize` bytes from `src`. `src` is what the descriptor covers: its
   * length is rounded up to 512-byte sectors, so trailing bytes after the compressed stream are
   * normal and ignored. Throws a CorruptionError (COMPRESSED_BAD_DATA, COMPRESSED_SHORT,
   * COMPRESSED_TOO_LONG) when the data does not decode to exactly one cluster. Never allocates
   * more than `clusterSize` bytes of output. `hostOffset` (default 0) only goes into the error.
   */
  decompress(src: Uint8Array, clusterSize: number, hostOffset?: number): Uint8Array;
}

/** A decompression failure; the codec only sees bytes, so the caller supplies the host offset. */
export function badData(
  codec: CodecType,
  code: ErrorCode,
  detail: string,
  hostOffset: number,
  data: Record<string, unknown> = {},
): CorruptionError {
  return new CorruptionError(code, `${codec}: compressed cluster ${detail}`, hostOffset, { codec, ...data });
}
