/**
 * Big-endian field access on byte arrays. 64-bit values are handled as numbers when they fit in
 * 53 bits (every offset the engine accepts), or as bigint where the full width matters (feature
 * bit masks).
 */

export function u16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

export function u32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

/** A 64-bit field as a number; exact up to 2^53. */
export function u64(b: Uint8Array, off: number): number {
  return u32(b, off) * 0x100000000 + u32(b, off + 4);
}

export function u64n(b: Uint8Array, off: number): bigint {
  return (BigInt(u32(b, off)) << 32n) | BigInt(u32(b, off + 4));
}

export function setU16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

export function setU32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

export function setU64(b: Uint8Array, off: number, v: number): void {
  setU32(b, off, Math.floor(v / 0x100000000));
  setU32(b, off + 4, v >>> 0);
}

export function setU64n(b: Uint8Array, off: number, v: bigint): void {
  setU32(b, off, Number((v >> 32n) & 0xffffffffn));
  setU32(b, off + 4, Number(v & 0xffffffffn));
}

/** hi/lo halves of a number < 2^53. */
export function join64(hi: number, lo: number): number {
  return (hi >>> 0) * 0x100000000 + (lo >>> 0);
}

export function alignUp(v: number, alignment: number): number {
  return Math.ceil(v / alignment) * alignment;
}

export const textDecoder = new TextDecoder('utf-8', { fatal: false });
export const textEncoder = new TextEncoder();
