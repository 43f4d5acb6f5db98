/**
 * zlib cluster compression (compression_type 0): raw deflate, no zlib header, 4 KiB window.
 *
 * QEMU (block/qcow2-threads.c, qcow2_zlib_compress / qcow2_zlib_decompress):
 * - compress: deflateInit2(level Z_DEFAULT_COMPRESSION = 6, Z_DEFLATED, windowBits -12,
 *   memLevel 9, Z_DEFAULT_STRATEGY), one deflate(Z_FINISH) into cluster_size - 1 bytes.
 * - decompress: inflateInit2(-12), one inflate(Z_FINISH) into a cluster-sized buffer; success is
 *   (Z_STREAM_END or Z_BUF_ERROR) with the output buffer completely filled. Z_BUF_ERROR is
 *   accepted because the descriptor only knows the compressed length to a sector, and it also
 *   means a stream that would inflate to more than one cluster is cut at the cluster, not refused.
 *
 * Deflate runs in the system's zlib (libz.ts), the library QEMU links, and in pako (a port of zlib
 * 1.2.x) where that cannot load: with the same parameters both give QEMU's bytes (checked against
 * qemu-io and against each other in test/codecs). Node's own zlib does not (see libz.ts).
 */
import { createRequire } from 'node:module';
import type * as Pako from 'pako';
import zlibInflate from 'pako/lib/zlib/inflate.js';
import ZStream from 'pako/lib/zlib/zstream.js';
import { ArgumentError } from '../errors.ts';
import { type ClusterCodec, badData } from './codec.ts';
import { libzRawDeflater } from './libz.ts';

// zlib.h return codes and flush values.
const Z_FINISH = 4;
const Z_OK = 0;
const Z_STREAM_END = 1;
const Z_BUF_ERROR = -5;

let pako: typeof Pako | undefined;
/**
 * pako's deflate, loaded on the first compression: pako's module builds its tables when loaded,
 * which every start of the CLI would pay otherwise (issue 12). Inflate uses pako's small
 * low-level modules, imported above.
 */
function deflateRaw(...args: Parameters<typeof Pako.deflateRaw>): ReturnType<typeof Pako.deflateRaw> {
  pako ??= createRequire(import.meta.url)('pako') as typeof Pako;
  return pako.deflateRaw(...args);
}

/** QEMU's deflate parameters. */
export const ZLIB_LEVEL = 6;
export const ZLIB_WINDOW_BITS = 12;
export const ZLIB_MEM_LEVEL = 9;

export class ZlibCodec implements ClusterCodec {
  readonly type = 'zlib' as const;

  compress(cluster: Uint8Array): Uint8Array | undefined {
    // the system's zlib, QEMU's own (libz.ts), where it loads; pako (the same bytes) elsewhere
    const libz = libzRawDeflater(ZLIB_LEVEL, ZLIB_WINDOW_BITS, ZLIB_MEM_LEVEL, 0);
    return libz ? libz.deflate(cluster, cluster.length - 1) : pakoCompress(cluster);
  }

  decompress(src: Uint8Array, clusterSize: number, hostOffset = 0): Uint8Array {
    checkClusterSize(clusterSize);
    const out = new Uint8Array(clusterSize);
    const strm = new ZStream();
    if (zlibInflate.inflateInit2(strm, -ZLIB_WINDOW_BITS) !== Z_OK) {
      throw badData('zlib', 'COMPRESSED_BAD_DATA', 'could not start inflate', hostOffset);
    }
    strm.input = src;
    strm.next_in = 0;
    strm.avail_in = src.length;
    strm.output = out;
    strm.next_out = 0;
    strm.avail_out = clusterSize;
    const ret = zlibInflate.inflate(strm, Z_FINISH);
    const produced = clusterSize - strm.avail_out;
    const msg = strm.msg;
    zlibInflate.inflateEnd(strm);
    if (ret !== Z_STREAM_END && ret !== Z_BUF_ERROR) {
      throw badData(
        'zlib',
        'COMPRESSED_BAD_DATA',
        `does not inflate (zlib ${ret}${msg ? `: ${msg}` : ''})`,
        hostOffset,
        {
          zlibStatus: ret,
          produced,
        },
      );
    }
    if (produced !== clusterSize) {
      throw badData(
        'zlib',
        'COMPRESSED_SHORT',
        `inflates to ${produced} bytes, not ${clusterSize}`,
        hostOffset,
        {
          produced,
          clusterSize,
        },
      );
    }
    return out;
  }
}

/** QEMU's compression in pako (a port of zlib 1.2.x): where libz.so.1 cannot load, and for tests. */
export function pakoCompress(cluster: Uint8Array): Uint8Array | undefined {
  const out = deflateRaw(cluster, {
    level: ZLIB_LEVEL,
    windowBits: ZLIB_WINDOW_BITS,
    memLevel: ZLIB_MEM_LEVEL,
    strategy: 0,
  });
  return out.length <= cluster.length - 1 ? out : undefined;
}

export function checkClusterSize(clusterSize: number): void {
  if (!Number.isInteger(clusterSize) || clusterSize < 512 || clusterSize > 2 * 1024 * 1024) {
    throw new ArgumentError('BAD_CLUSTER_SIZE', `cluster size ${clusterSize} out of range`, { clusterSize });
  }
}
