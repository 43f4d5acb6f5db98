/**
 * Types for the two low-level modules of pako (a line-by-line port of zlib 1.2.x) that the zlib
 * codec drives directly: @types/pako only covers the high-level wrappers, and those grow their
 * output without bound, while a qcow2 reader must inflate into exactly one cluster (QEMU's
 * qcow2_zlib_decompress passes a cluster-sized buffer to one inflate(Z_FINISH) call).
 */

declare module 'pako/lib/zlib/zstream.js' {
  /** zlib's z_stream, with JS arrays in place of pointers. */
  class ZStream {
    input: Uint8Array | null;
    next_in: number;
    avail_in: number;
    total_in: number;
    output: Uint8Array | null;
    next_out: number;
    avail_out: number;
    total_out: number;
    msg: string;
  }
  export default ZStream;
}

declare module 'pako/lib/zlib/inflate.js' {
  import type ZStream from 'pako/lib/zlib/zstream.js';

  interface ZlibInflate {
    inflateInit2(strm: ZStream, windowBits: number): number;
    inflate(strm: ZStream, flush: number): number;
    inflateEnd(strm: ZStream): number;
  }
  const zlibInflate: ZlibInflate;
  export default zlibInflate;
}
