import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SectorCipher } from '../../src/crypto/sector-cipher.ts';

/** OpenSSL's XTS/CBC, one cipher per sector (what SectorCipher did before it batched sectors). */
function perSector(
  alg: string,
  key: Buffer,
  data: Uint8Array,
  first: number,
  iv: (s: number) => Buffer,
): Buffer {
  const out: Buffer[] = [];
  for (let off = 0, s = first; off < data.length; off += 512, s++) {
    const c = createCipheriv(alg, key, iv(s)).setAutoPadding(false);
    out.push(c.update(data.subarray(off, off + 512)), c.final());
  }
  return Buffer.concat(out);
}

const plain64 = (s: number): Buffer => {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(BigInt(s));
  return iv;
};
const plain = (s: number): Buffer => {
  const iv = Buffer.alloc(16);
  iv.writeUInt32LE(s % 2 ** 32);
  return iv;
};

describe('sector ciphers batched over a request equal OpenSSL one sector at a time', () => {
  const bytes = (n: number, seed: number): Buffer => {
    const b = Buffer.alloc(n);
    let s = seed;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      b[i] = s >>> 24;
    }
    return b;
  };
  it.each([
    ['aes-128-xts', 32, 'plain64'],
    ['aes-256-xts', 64, 'plain64'],
    ['aes-256-xts', 64, 'plain'],
    ['aes-256-cbc', 32, 'plain64'],
    ['aes-128-cbc', 16, 'plain'],
  ] as const)(
    '%s (%i-byte key, %s IVs), encrypt and decrypt, aligned and unaligned buffers',
    (alg, keyBytes, ivgen) => {
      const key = bytes(keyBytes, keyBytes);
      const cipher = new SectorCipher({ key, mode: alg.endsWith('xts') ? 'xts' : 'cbc', ivgen });
      // sector numbers past 2^32: plain truncates, plain64 keeps the high word
      // 37 sectors: one batched pass; 600 (300 KiB): cut into passes of 256 KiB
      for (const [first, sectors] of [
        [0, 37],
        [7, 600],
        [2 ** 32 - 3, 37],
        [2 ** 32 - 300, 600],
      ] as const) {
        const data = bytes(sectors * 512, first + 1);
        const want = perSector(alg, key, data, first, ivgen === 'plain' ? plain : plain64);
        const aligned = Uint8Array.from(data);
        expect(Buffer.from(cipher.encrypt(aligned, first)).equals(want), `encrypt at ${first}`).toBe(true);
        expect(Buffer.from(cipher.decrypt(aligned, first)).equals(data), `decrypt at ${first}`).toBe(true);
        const odd = new Uint8Array(data.length + 1).subarray(1);
        odd.set(data);
        expect(Buffer.from(cipher.encrypt(odd, first)).equals(want), `unaligned encrypt at ${first}`).toBe(
          true,
        );
        expect(Buffer.from(cipher.decrypt(odd, first)).equals(data), `unaligned decrypt at ${first}`).toBe(
          true,
        );
      }
    },
  );
});
