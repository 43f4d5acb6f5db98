import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SHA256_SHORT_MAX, sha256Short } from '../../src/crypto/sha256-short.ts';
import { afMerge } from '../../src/crypto/afsplit.ts';

describe('one-block SHA-256 (the AF splitter fast path)', () => {
  it('equals node:crypto for every length from 0 to 55 bytes, on varied bytes', () => {
    const out = new Uint8Array(32);
    let s = 12345;
    for (let len = 0; len <= SHA256_SHORT_MAX; len++) {
      for (let k = 0; k < 8; k++) {
        const msg = new Uint8Array(len);
        for (let i = 0; i < len; i++) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          msg[i] = k === 0 ? 0xff : s >>> 24;
        }
        sha256Short(msg, len, out);
        expect(Buffer.from(out).toString('hex'), `length ${len}`).toBe(
          createHash('sha256').update(msg).digest('hex'),
        );
      }
    }
    expect(() => sha256Short(new Uint8Array(56), 56, out)).toThrow();
  });

  it('AF merge (sha256 through the fast path) equals a merge computed with node:crypto alone', () => {
    const n = 64; // an XTS-256 key: two 32-byte pieces per stripe
    const stripes = 40;
    const split = Uint8Array.from({ length: n * stripes }, (_, i) => (i * 11 + 3) & 0xff);
    const d = new Uint8Array(n);
    for (let i = 0; i < stripes - 1; i++) {
      for (let j = 0; j < n; j++) d[j] = d[j]! ^ split[i * n + j]!;
      for (let p = 0; p * 32 < n; p++) {
        const be = Buffer.alloc(4);
        be.writeUInt32BE(p);
        const h = createHash('sha256')
          .update(be)
          .update(d.subarray(p * 32, p * 32 + 32))
          .digest();
        d.set(h, p * 32);
      }
    }
    const want = d.map((x, j) => x ^ split[(stripes - 1) * n + j]!);
    expect(Buffer.from(afMerge('sha256', split, n, stripes)).toString('hex')).toBe(
      Buffer.from(want).toString('hex'),
    );
  });
});
