/**
 * zstd cluster compression (compression_type 1): standard zstd frames.
 *
 * QEMU (block/qcow2-threads.c, qcow2_zstd_compress / qcow2_zstd_decompress):
 * - compress: a fresh ZSTD_CCtx with default parameters (level ZSTD_CLEVEL_DEFAULT = 3, no
 *   checksum), ZSTD_compressStream2(..., ZSTD_e_end) with the whole cluster as input, so the
 *   frame records its content size. ZSTD_compress at level 3 produces the same frame layout.
 *   Output capacity is cluster_size - 1 (as for zlib).
 * - decompress: ZSTD_decompressStream into a cluster-sized buffer until it is full; the input
 *   may hold several frames (it keeps going frame after frame) and trailing bytes after the last
 *   needed frame are ignored. It fails when the input runs out first, or when the frame that
 *   filled the buffer is not finished (it would produce more than one cluster).
 *
 * libzstd's one-shot ZSTD_decompress needs the exact length of a frame, so we walk the frame
 * structure (RFC 8878 §3.1) to find where each frame ends and decode frame by frame into the
 * remaining part of the cluster buffer.
 */
import { type ClusterCodec, badData } from './codec.ts';
import { checkClusterSize } from './zlib.ts';
import { ZSTD_ERROR_DST_SIZE_TOO_SMALL, zstdErrorCode, zstdRuntime } from './zstd-wasm.ts';
import { Qcow2Error } from '../errors.ts';

export const ZSTD_LEVEL = 3;

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

function le32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

export type FrameScan =
  | { kind: 'zstd' | 'skippable'; length: number }
  | { kind: 'truncated' }
  | { kind: 'invalid'; reason: string };

/** Where the frame starting at `pos` ends (RFC 8878 §3.1.1 frame header, §3.1.1.2 blocks). */
export function scanFrame(b: Uint8Array, pos: number): FrameScan {
  if (pos + 4 > b.length) return { kind: 'truncated' };
  const magic = le32(b, pos);
  if ((magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC) {
    if (pos + 8 > b.length) return { kind: 'truncated' };
    const length = 8 + le32(b, pos + 4);
    return pos + length > b.length ? { kind: 'truncated' } : { kind: 'skippable', length };
  }
  if (magic !== ZSTD_MAGIC) return { kind: 'invalid', reason: `bad frame magic 0x${magic.toString(16)}` };
  let p = pos + 4;
  if (p >= b.length) return { kind: 'truncated' };
  const fhd = b[p++]!;
  if (fhd & 0x08) return { kind: 'invalid', reason: 'reserved frame header bit set' };
  const singleSegment = (fhd >> 5) & 1;
  const fcsFlag = fhd >> 6;
  const checksum = (fhd >> 2) & 1;
  const dictIdSize = [0, 1, 2, 4][fhd & 3]!;
  const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  p += (singleSegment ? 0 : 1) + dictIdSize + fcsSize;
  for (;;) {
    if (p + 3 > b.length) return { kind: 'truncated' };
    const bh = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16);
    p += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) return { kind: 'invalid', reason: 'reserved block type' };
    p += type === 1 ? 1 : size; // RLE blocks store one byte
    if (p > b.length) return { kind: 'truncated' };
    if (last) break;
  }
  if (checksum) p += 4;
  if (p > b.length) return { kind: 'truncated' };
  return { kind: 'zstd', length: p - pos };
}

export class ZstdCodec implements ClusterCodec {
  readonly type = 'zstd' as const;

  compress(cluster: Uint8Array): Uint8Array | undefined {
    const zstd = zstdRuntime();
    const n = cluster.length;
    const bound = zstd._ZSTD_compressBound(n);
    const src = zstd._malloc(n);
    const dst = zstd._malloc(bound);
    try {
      zstd.HEAPU8.set(cluster, src);
      const ret = zstd._ZSTD_compress(dst, bound, src, n, ZSTD_LEVEL);
      const err = zstdErrorCode(ret);
      if (err)
        throw new Qcow2Error('COMPRESS_FAILED', `zstd: compression failed (error ${err})`, {
          zstdError: err,
        });
      if (ret > n - 1) return undefined;
      return zstd.HEAPU8.slice(dst, dst + ret);
    } finally {
      zstd._free(dst);
      zstd._free(src);
    }
  }

  decompress(src: Uint8Array, clusterSize: number, hostOffset = 0): Uint8Array {
    checkClusterSize(clusterSize);
    const zstd = zstdRuntime();
    const srcPtr = zstd._malloc(Math.max(1, src.length));
    const dstPtr = zstd._malloc(clusterSize);
    try {
      zstd.HEAPU8.set(src, srcPtr);
      let pos = 0;
      let produced = 0;
      while (produced < clusterSize) {
        const frame = scanFrame(src, pos);
        if (frame.kind === 'truncated') {
          throw badData(
            'zstd',
            'COMPRESSED_SHORT',
            `ends after ${produced} of ${clusterSize} bytes`,
            hostOffset,
            {
              produced,
              clusterSize,
              inputOffset: pos,
            },
          );
        }
        if (frame.kind === 'invalid') {
          throw badData(
            'zstd',
            'COMPRESSED_BAD_DATA',
            `is not a zstd frame at byte ${pos}: ${frame.reason}`,
            hostOffset,
            {
              inputOffset: pos,
            },
          );
        }
        if (frame.kind === 'zstd') {
          const ret = zstd._ZSTD_decompress(
            dstPtr + produced,
            clusterSize - produced,
            srcPtr + pos,
            frame.length,
          );
          const err = zstdErrorCode(ret);
          if (err === ZSTD_ERROR_DST_SIZE_TOO_SMALL) {
            throw badData(
              'zstd',
              'COMPRESSED_TOO_LONG',
              `decodes to more than ${clusterSize} bytes`,
              hostOffset,
              {
                clusterSize,
              },
            );
          }
          if (err) {
            throw badData('zstd', 'COMPRESSED_BAD_DATA', `does not decode (zstd error ${err})`, hostOffset, {
              zstdError: err,
              inputOffset: pos,
            });
          }
          produced += ret;
        }
        pos += frame.length;
      }
      return zstd.HEAPU8.slice(dstPtr, dstPtr + clusterSize);
    } finally {
      zstd._free(dstPtr);
      zstd._free(srcPtr);
    }
  }
}
