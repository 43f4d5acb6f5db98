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

/**
 * H: the block hashed in place, digest-sized piece by piece. Its buffers are made once per split
 * or merge, and the pieces copied by hand: thousands of stripes per unlock, and a subarray or a
 * buffer per piece was most of the garbage of a LUKS open.
 */
function diffuser(hash: string): (block: Uint8Array) => void {
  const digestLen = createHash(hash).digest().length;
  const piece = new Uint8Array(4 + digestLen); // be32(i) || piece
  const short = hash === 'sha256' ? new Uint8Array(32) : undefined;
  return (block) => {
    for (let i = 0, off = 0; off < block.length; i++, off += digestLen) {
      const len = Math.min(digestLen, block.length - off);
      piece[0] = i >>> 24;
      piece[1] = (i >>> 16) & 0xff;
      piece[2] = (i >>> 8) & 0xff;
      piece[3] = i & 0xff;
      for (let k = 0; k < len; k++) piece[4 + k] = block[off + k]!;
      const d = short && 4 + len <= SHA256_SHORT_MAX ? short : hashOnce(hash, piece.subarray(0, 4 + len));
      if (d === short) sha256Short(piece, 4 + len, short);
      for (let k = 0; k < len; k++) block[off + k] = d[k]!;
    }
  };
}

/** d ^= src[at .. at + d.length). */
function xorAt(d: Uint8Array, src: Uint8Array, at: number): void {
  for (let i = 0; i < d.length; i++) d[i] = d[i]! ^ src[at + i]!;
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
  const diffuse = diffuser(hash);
  for (let i = 0; i < stripes - 1; i++) {
    xorAt(d, out, i * n);
    diffuse(d);
  }
  for (let j = 0; j < n; j++) out[(stripes - 1) * n + j] = key[j]! ^ d[j]!;
  return out;
}

/** Recovers the key of `keyLength` bytes from `stripes` split blocks. */
export function afMerge(hash: string, split: Uint8Array, keyLength: number, stripes: number): Uint8Array {
  const n = keyLength;
  const d = new Uint8Array(n);
  const diffuse = diffuser(hash);
  for (let i = 0; i < stripes - 1; i++) {
    xorAt(d, split, i * n);
    diffuse(d);
  }
  xorAt(d, split, (stripes - 1) * n);
  return d;
}
