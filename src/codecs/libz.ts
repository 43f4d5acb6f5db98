/**
 * Raw deflate through the system's zlib (libz.so.1), the library QEMU itself links: for the zlib
 * cluster codec (zlib.ts), ~4× faster than pako's JavaScript port, with the same bytes.
 *
 * Why not node:zlib: Node bundles Chromium's fork of zlib, whose deflate finds other matches (SIMD
 * hashing), so its output differs from QEMU's for about half of the clusters tried (179 of 400
 * inputs, window bits 12, level 6); a compressed cluster must be byte for byte what qemu-img
 * writes. For the same reason the library is opened with RTLD_DEEPBIND: Node exports its own
 * zlib's symbols, and libz's internal calls (deflateReset from deflateInit2_, ...) would otherwise
 * bind to those, whose state layout is not libz's.
 *
 * One z_stream for the process, made once by deflateInit2_ and reset (deflateReset: the state of
 * a fresh deflateInit2_, without allocating it again) before each cluster. Its memory and the
 * buffers its pointers name are Node Buffers, whose backing stores never move. Loaded on first
 * use; undefined where koffi or libz.so.1 cannot load (zlib.ts then uses pako).
 */
import { koffiModule } from '../io/libc.ts';

/** zlib.h: Z_FINISH, Z_OK, Z_STREAM_END, Z_DEFLATED. */
const Z_FINISH = 4;
const Z_OK = 0;
const Z_STREAM_END = 1;
const Z_DEFLATED = 8;
/** sizeof(z_stream) and its fields' offsets on LP64 (x86-64, aarch64 Linux). */
const Z_STREAM_SIZE = 112;
const NEXT_IN = 0;
const AVAIL_IN = 8;
const NEXT_OUT = 24;
const AVAIL_OUT = 32;

export interface RawDeflater {
  /**
   * `input` deflated (raw, with the parameters the deflater was made with) if the whole stream
   * fits in `maxOut` bytes, else undefined (QEMU's qcow2_zlib_compress: one deflate(Z_FINISH)
   * into a buffer of cluster_size - 1 bytes; anything but Z_STREAM_END means "store it plain").
   */
  deflate(input: Uint8Array, maxOut: number): Uint8Array | undefined;
}

let made: Map<string, RawDeflater | null> | undefined;

/** The deflater for (level, window bits, memLevel, strategy), or undefined without libz. */
export function libzRawDeflater(
  level: number,
  windowBits: number,
  memLevel: number,
  strategy: number,
): RawDeflater | undefined {
  made ??= new Map();
  const key = `${level},${windowBits},${memLevel},${strategy}`;
  if (!made.has(key)) made.set(key, open(level, windowBits, memLevel, strategy));
  return made.get(key) ?? undefined;
}

function open(level: number, windowBits: number, memLevel: number, strategy: number): RawDeflater | null {
  if (process.arch !== 'x64' && process.arch !== 'arm64') return null; // the offsets above are LP64's
  const koffi = koffiModule();
  if (!koffi) return null;
  let fn: (decl: string) => (...args: unknown[]) => unknown;
  let memmove: (...args: unknown[]) => unknown;
  try {
    const z = koffi.load('libz.so.1', { deep: true });
    fn = (decl) => z.func(decl);
    // memmove(p, p, 0) returns p: a Buffer's address, for the z_stream's pointers
    memmove = koffi.load('libc.so.6').func('void *memmove(void *dst, const void *src, size_t n)');
  } catch {
    return null;
  }
  const version = fn('const char *zlibVersion()')() as string;
  const init = fn(
    'int deflateInit2_(void *strm, int level, int method, int windowBits, int memLevel, int strategy, const char *version, int stream_size)',
  );
  const reset = fn('int deflateReset(void *strm)');
  const deflate = fn('int deflate(void *strm, int flush)');
  const strm = Buffer.alloc(Z_STREAM_SIZE);
  // negative window bits: raw deflate, no zlib header or trailer
  if (init(strm, level, Z_DEFLATED, -windowBits, memLevel, strategy, version, Z_STREAM_SIZE) !== Z_OK)
    return null;
  const address = (b: Uint8Array): bigint => koffi.address(memmove(b, b, 0));
  return {
    deflate(data, maxOut) {
      // V8 keeps typed arrays of at most 64 bytes on its heap, where the GC may move them
      const input = data.length > 64 ? data : Buffer.from(data);
      if (reset(strm) !== Z_OK) throw new Error('internal: deflateReset failed');
      const out = Buffer.allocUnsafeSlow(Math.max(1, maxOut));
      strm.writeBigUInt64LE(address(input), NEXT_IN);
      strm.writeUInt32LE(input.length, AVAIL_IN);
      strm.writeBigUInt64LE(address(out), NEXT_OUT);
      strm.writeUInt32LE(maxOut, AVAIL_OUT);
      const r = deflate(strm, Z_FINISH);
      const produced = maxOut - strm.readUInt32LE(AVAIL_OUT);
      // the stream's pointers are left naming these buffers: cleared, as nothing may use them
      strm.writeBigUInt64LE(0n, NEXT_IN);
      strm.writeBigUInt64LE(0n, NEXT_OUT);
      return r === Z_STREAM_END ? new Uint8Array(out.buffer, out.byteOffset, produced) : undefined;
    },
  };
}
