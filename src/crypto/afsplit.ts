/**
 * LUKS anti-forensic information splitter (LUKS1 spec "AF-Splitter"; QEMU crypto/afsplit.c).
 *
 * A key of n bytes becomes `stripes` blocks of n bytes: blocks 0..stripes-2 are random, and
 * running d = H(d xor s[i]) over them (d starts as zeros) ends with the last block =
 * d xor key. H ("diffuse") hashes the block in digest-sized pieces: piece i becomes
 * hash(be32(i) || piece) truncated to the piece's length.
 */
import { createHash, hashOnce, randomBytes } from './node-crypto.ts';
import { SHA256_SHORT_MAX, sha256Short } from './sha256-short.ts';

function diffuse(hash: string, digestLen: number, block: Uint8Array): void {
  const piece = new Uint8Array(4 + digestLen); // be32(i) || piece
  const view = new DataView(piece.buffer);
  const short = hash === 'sha256' ? new Uint8Array(32) : undefined;
  for (let i = 0, off = 0; off < block.length; i++, off += digestLen) {
    const len = Math.min(digestLen, block.length - off);
    view.setUint32(0, i, false);
    piece.set(block.subarray(off, off + len), 4);
    if (short && 4 + len <= SHA256_SHORT_MAX) {
      sha256Short(piece.subarray(0, 4 + len), short);
      block.set(short.subarray(0, len), off);
      continue;
    }
    const d = hashOnce(hash, piece.subarray(0, 4 + len));
    block.set(d.subarray(0, len), off);
  }
}

function xorInto(out: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! ^ b[i]!;
}

/** Splits `key` into `stripes` blocks; `random` supplies the random stripes (tests may fix it). */
export function afSplit(
  hash: string,
  key: Uint8Array,
  stripes: number,
  random: (n: number) => Uint8Array = (n) => randomBytes(n),
): Uint8Array {
  const n = key.length;
  const out = new Uint8Array(n * stripes);
  out.set(random(n * (stripes - 1)));
  const d = new Uint8Array(n);
  const digestLen = createHash(hash).digest().length;
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, out.subarray(i * n, (i + 1) * n), d);
    diffuse(hash, digestLen, d);
  }
  xorInto(out.subarray((stripes - 1) * n), key, d);
  return out;
}

/** Recovers the key of `keyLength` bytes from `stripes` split blocks. */
export function afMerge(hash: string, split: Uint8Array, keyLength: number, stripes: number): Uint8Array {
  const n = keyLength;
  const d = new Uint8Array(n);
  const digestLen = createHash(hash).digest().length;
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, split.subarray(i * n, (i + 1) * n), d);
    diffuse(hash, digestLen, d);
  }
  const key = new Uint8Array(n);
  xorInto(key, split.subarray((stripes - 1) * n, stripes * n), d);
  return key;
}
