/**
 * SHA-256 (FIPS 180-4) of a message short enough for one 64-byte block (at most 55 bytes), in
 * JavaScript: the LUKS AF splitter (afsplit.ts) hashes thousands of 36-byte pieces per unlock, one
 * after another, where a node:crypto call costs ~3 µs of overhead for a ~0.3 µs compression.
 * Longer messages and other hashes go to node:crypto; the tests compare this with it.
 */

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);
const H0 = Int32Array.from([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

/** The longest message one block holds: 64 bytes less the 0x80 byte and the 64-bit length. */
export const SHA256_SHORT_MAX = 55;

const w = new Int32Array(64);

/** SHA-256 of the first `len` bytes of `msg` (≤ 55) into `out` (32 bytes). */
export function sha256Short(msg: Uint8Array, len: number, out: Uint8Array): void {
  if (len > SHA256_SHORT_MAX || len > msg.length)
    throw new Error('internal: sha256Short takes at most 55 bytes');
  // padding: the message, 0x80, zeros, the length in bits as a big-endian u64 (< 2^32 here);
  // whole message words first, then the word holding the 0x80
  const whole = len >>> 2;
  let i = 0;
  for (let k = 0; i < whole; i++, k += 4)
    w[i] = (msg[k]! << 24) | (msg[k + 1]! << 16) | (msg[k + 2]! << 8) | msg[k + 3]!;
  let v = 0;
  for (let k = 0, at = whole * 4; k < 4; k++, at++)
    v = (v << 8) | (at < len ? msg[at]! : at === len ? 0x80 : 0);
  w[i++] = v;
  for (; i < 14; i++) w[i] = 0;
  w[14] = 0;
  w[15] = len * 8;
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15]!;
    const b = w[i - 2]!;
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0;
  }
  let a = H0[0]!;
  let b = H0[1]!;
  let c = H0[2]!;
  let d = H0[3]!;
  let e = H0[4]!;
  let f = H0[5]!;
  let g = H0[6]!;
  let h = H0[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + K[i]! + w[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  put(out, 0, H0[0]! + a);
  put(out, 1, H0[1]! + b);
  put(out, 2, H0[2]! + c);
  put(out, 3, H0[3]! + d);
  put(out, 4, H0[4]! + e);
  put(out, 5, H0[5]! + f);
  put(out, 6, H0[6]! + g);
  put(out, 7, H0[7]! + h);
}

/** Word `i` of the digest, big-endian. */
function put(out: Uint8Array, i: number, v: number): void {
  out[i * 4] = v >>> 24;
  out[i * 4 + 1] = (v >>> 16) & 0xff;
  out[i * 4 + 2] = (v >>> 8) & 0xff;
  out[i * 4 + 3] = v & 0xff;
}
