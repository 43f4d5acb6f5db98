/**
 * Sector ciphers as QEMU's crypto layer applies them (crypto/block.c
 * qcrypto_block_cipher_{en,de}crypt_helper): the data is cut into sectors, and each sector is
 * encrypted on its own with an IV computed from its sector number (the byte offset given by the
 * caller divided by the sector size).
 *
 * Built on node:crypto (OpenSSL): AES-NI speed, and XTS is built in. Legacy AES (aes-legacy.ts) is
 * this class's CBC/plain64 case.
 *
 * IV generators (crypto/ivgen-*.c), for a 16-byte AES IV:
 * - plain:   the sector number truncated to 32 bits, little-endian, zero padded;
 * - plain64: the sector number as 64-bit little-endian, zero padded;
 * - essiv:   plain64, encrypted (AES-ECB) with hash(key) as the key; the AES key size is the
 *            digest length (dm-crypt's rule, qcrypto_block_luks_essiv_cipher).
 */
import { type Cipher, type Decipher, createCipheriv, createDecipheriv, createHash } from './node-crypto.ts';
import { ArgumentError, UnsupportedError } from '../errors.ts';

export const CRYPTO_SECTOR_SIZE = 512;

export type CipherMode = 'cbc' | 'xts';
export type IvGenAlgorithm = 'plain' | 'plain64' | 'essiv';

export interface SectorCipherSpec {
  /** Cipher key: 16/24/32 bytes for CBC, twice that for XTS (data key then tweak key). */
  key: Uint8Array;
  mode: CipherMode;
  ivgen: IvGenAlgorithm;
  /** Node/OpenSSL digest name for essiv (e.g. 'sha256'). */
  ivgenHash?: string;
  sectorSize?: number;
}

/** Encrypts/decrypts whole sectors in place; `firstSector` numbers the first sector of `data`. */
export class SectorCipher {
  private readonly key: Buffer;
  private readonly algorithm: string;
  private readonly ecbAlgorithm: string;
  private readonly mode: CipherMode;
  private readonly ivgen: IvGenAlgorithm;
  private readonly essivKey: Buffer | undefined;
  private readonly essivAlgorithm: string | undefined;
  readonly sectorSize: number;

  constructor(spec: SectorCipherSpec) {
    const keyBits = (spec.mode === 'xts' ? spec.key.length / 2 : spec.key.length) * 8;
    if (keyBits !== 128 && keyBits !== 192 && keyBits !== 256) {
      throw new UnsupportedError(
        'CIPHER_KEY_SIZE',
        `AES-${spec.mode} with a ${spec.key.length}-byte key is not supported`,
        {
          keyBytes: spec.key.length,
          mode: spec.mode,
        },
      );
    }
    if (spec.mode === 'xts' && keyBits === 192) {
      throw new UnsupportedError('CIPHER_KEY_SIZE', 'AES-192-XTS is not supported', {
        keyBytes: spec.key.length,
      });
    }
    this.key = Buffer.from(spec.key);
    this.mode = spec.mode;
    this.algorithm = `aes-${keyBits}-${spec.mode}`;
    this.ecbAlgorithm = `aes-${keyBits}-ecb`;
    this.ivgen = spec.ivgen;
    this.sectorSize = spec.sectorSize ?? CRYPTO_SECTOR_SIZE;
    if (spec.ivgen === 'essiv') {
      const hash = spec.ivgenHash ?? 'sha256';
      const digest = createHash(hash).update(this.key).digest();
      if (digest.length !== 16 && digest.length !== 24 && digest.length !== 32) {
        throw new UnsupportedError(
          'ESSIV_HASH',
          `No AES cipher with key size ${digest.length} available for essiv`,
          {
            hash,
          },
        );
      }
      this.essivKey = digest;
      this.essivAlgorithm = `aes-${digest.length * 8}-ecb`;
    }
  }

  /**
   * AES-ECB without padding, one per use, made once and kept: ECB carries no state from one block
   * to the next, so `update` of whole blocks gives exactly their cipher text, call after call
   * (final() is never needed: nothing is held back without padding), and a request costs no
   * cipher set-up (key schedule) of its own.
   */
  private readonly ecbs: Partial<Record<EcbUse, Cipher | Decipher>> = {};

  private ecbOf(use: EcbUse): Cipher | Decipher {
    const made = this.ecbs[use];
    if (made) return made;
    const half = this.key.length / 2;
    // XTS: the first half of the key encrypts the data, the second the tweaks
    const key =
      use === 'cbcEnc' || use === 'cbcDec'
        ? this.key
        : use === 'xtsTweak'
          ? this.key.subarray(half)
          : this.key.subarray(0, half);
    const algorithm = use === 'cbcEnc' || use === 'cbcDec' ? this.ecbAlgorithm : `aes-${half * 8}-ecb`;
    const c = (use === 'cbcDec' || use === 'xtsDec' ? createDecipheriv : createCipheriv)(
      algorithm,
      key,
      null,
    ).setAutoPadding(false);
    this.ecbs[use] = c;
    return c;
  }

  /** The IV of one sector. */
  iv(sector: number): Buffer {
    const iv = Buffer.alloc(16);
    if (this.ivgen === 'plain') {
      iv.writeUInt32LE(sector % 0x100000000, 0);
      return iv;
    }
    iv.writeBigUInt64LE(BigInt(sector), 0);
    if (this.ivgen === 'essiv') {
      const c = createCipheriv(this.essivAlgorithm!, this.essivKey!, null).setAutoPadding(false);
      return Buffer.concat([c.update(iv), c.final()]);
    }
    return iv;
  }

  encrypt(data: Uint8Array, firstSector: number): Uint8Array {
    this.check(data, firstSector);
    if (data.length > BATCH_BYTES) return this.inBatches(data, firstSector, true);
    if (this.mode === 'cbc') return this.encryptCbc(data, firstSector);
    if (LITTLE_ENDIAN) return this.xts(data, firstSector, true);
    for (let off = 0, s = firstSector; off < data.length; off += this.sectorSize, s++) {
      const c = createCipheriv(this.algorithm, this.key, this.iv(s)).setAutoPadding(false);
      this.run(c, data, off);
    }
    return data;
  }

  decrypt(data: Uint8Array, firstSector: number): Uint8Array {
    this.check(data, firstSector);
    if (data.length > BATCH_BYTES) return this.inBatches(data, firstSector, false);
    if (this.mode === 'cbc') return this.decryptCbc(data, firstSector);
    if (LITTLE_ENDIAN) return this.xts(data, firstSector, false);
    for (let off = 0, s = firstSector; off < data.length; off += this.sectorSize, s++) {
      const d = createDecipheriv(this.algorithm, this.key, this.iv(s)).setAutoPadding(false);
      this.run(d, data, off);
    }
    return data;
  }

  /**
   * CBC decryption needs no chaining through the cipher: P[i] = D(C[i]) xor C[i-1], with the
   * sector IV in place of C[-1]. One ECB pass over the whole buffer, then the xors.
   */
  private decryptCbc(data: Uint8Array, firstSector: number): Uint8Array {
    const plain = words(this.ecbOf('cbcDec').update(data));
    const ivs = words(this.ivs(firstSector, data.length / this.sectorSize));
    const w = words(data); // the cipher text, overwritten below from its end (C[i-1] is read first)
    const ss = this.sectorSize >> 2;
    for (let off = 0, s = 0; off < w.length; off += ss, s += 4) {
      for (let i = off + ss - 1; i >= off + 4; i--) w[i] = plain[i]! ^ w[i - 4]!;
      for (let i = 0; i < 4; i++) w[off + i] = plain[off + i]! ^ ivs[s + i]!;
    }
    if (w.buffer !== data.buffer) data.set(new Uint8Array(w.buffer));
    return data;
  }

  /**
   * CBC encryption of many sectors in lockstep: block k of every sector depends only on block k-1
   * of the same sector (C[k] = E(P[k] xor C[k-1]), the sector's IV as C[-1]), so the k-th blocks
   * of all sectors go through one ECB call together — sectorSize / 16 cipher calls per request,
   * whatever its length, where a cipher per sector costs a cipher set-up per 512 bytes.
   */
  private encryptCbc(data: Uint8Array, firstSector: number): Uint8Array {
    const w = words(data);
    const ss = this.sectorSize >> 2; // in 32-bit words
    const n = data.length / this.sectorSize;
    const prev = new Uint32Array(n * 4);
    new Uint8Array(prev.buffer).set(this.ivs(firstSector, n));
    const x = new Uint32Array(n * 4);
    const xBytes = new Uint8Array(x.buffer);
    const c = this.ecbOf('cbcEnc');
    for (let k = 0; k < ss; k += 4) {
      for (let at = k, p = 0; p < x.length; at += ss, p += 4) {
        x[p] = w[at]! ^ prev[p]!;
        x[p + 1] = w[at + 1]! ^ prev[p + 1]!;
        x[p + 2] = w[at + 2]! ^ prev[p + 2]!;
        x[p + 3] = w[at + 3]! ^ prev[p + 3]!;
      }
      new Uint8Array(prev.buffer).set(c.update(xBytes));
      for (let at = k, p = 0; p < x.length; at += ss, p += 4) {
        w[at] = prev[p]!;
        w[at + 1] = prev[p + 1]!;
        w[at + 2] = prev[p + 2]!;
        w[at + 3] = prev[p + 3]!;
      }
    }
    if (w.buffer !== data.buffer) data.set(new Uint8Array(w.buffer));
    return data;
  }

  /** A long request a batch of sectors at a time: the batched passes' buffers stay in the CPU's caches. */
  private inBatches(data: Uint8Array, firstSector: number, encrypt: boolean): Uint8Array {
    const step = BATCH_BYTES - (BATCH_BYTES % this.sectorSize);
    for (let off = 0; off < data.length; off += step) {
      const part = data.subarray(off, Math.min(data.length, off + step));
      const first = firstSector + off / this.sectorSize;
      if (encrypt) this.encrypt(part, first);
      else this.decrypt(part, first);
    }
    return data;
  }

  /**
   * XTS (IEEE 1619) of many sectors through one ECB pass: each sector's tweak T = E_k2(IV), block j
   * of the sector is E_k1(P xor T·α^j) xor T·α^j (α^j: j doublings in GF(2^128), little-endian,
   * reduced by x^128 + x^7 + x^2 + x + 1, i.e. 0x87 into the low byte), and no block depends on
   * another, so all of them go through the cipher together instead of a cipher set-up per
   * sector. Sector sizes are whole blocks: no ciphertext stealing. Decryption: P = D_k1(C xor T)
   * xor T with the same tweaks.
   */
  private xts(data: Uint8Array, firstSector: number, encrypt: boolean): Uint8Array {
    const n = data.length / this.sectorSize;
    const first = words(this.ecbOf('xtsTweak').update(this.ivs(firstSector, n)));
    // the tweaks and the cipher's input in buffers kept between calls (requests are cut to
    // BATCH_BYTES): two fewer allocations of the request's size per request
    const nw = data.length >> 2;
    if (xtsScratch.length < nw * 2) xtsScratch = new Uint32Array(Math.max(nw * 2, 2048));
    const tweaks = xtsScratch.subarray(0, nw);
    const x = xtsScratch.subarray(nw, nw * 2);
    const per = this.sectorSize >> 2;
    for (let s = 0; s < n; s++) {
      let w0 = first[s * 4]!;
      let w1 = first[s * 4 + 1]!;
      let w2 = first[s * 4 + 2]!;
      let w3 = first[s * 4 + 3]!;
      for (let at = s * per, end = at + per; at < end; at += 4) {
        tweaks[at] = w0;
        tweaks[at + 1] = w1;
        tweaks[at + 2] = w2;
        tweaks[at + 3] = w3;
        const carry = w3 >>> 31;
        w3 = (w3 << 1) | (w2 >>> 31);
        w2 = (w2 << 1) | (w1 >>> 31);
        w1 = (w1 << 1) | (w0 >>> 31);
        w0 = (w0 << 1) ^ (carry * 0x87);
      }
    }
    const w = words(data);
    for (let i = 0; i < nw; i++) x[i] = w[i]! ^ tweaks[i]!;
    const c = this.ecbOf(encrypt ? 'xtsEnc' : 'xtsDec');
    const y = words(c.update(new Uint8Array(x.buffer, x.byteOffset, nw * 4)));
    for (let i = 0; i < nw; i++) w[i] = y[i]! ^ tweaks[i]!;
    if (w.buffer !== data.buffer) data.set(new Uint8Array(w.buffer));
    return data;
  }

  /** The IVs of `n` sectors from `first`, 16 bytes each, end to end (essiv's in one ECB pass). */
  private ivs(first: number, n: number): Buffer {
    const out = Buffer.alloc(n * 16);
    for (let s = 0; s < n; s++) {
      // plain: the low 32 bits; plain64/essiv: 64 bits, little-endian (sector < 2^53)
      out.writeUInt32LE((first + s) % 0x100000000, s * 16);
      if (this.ivgen !== 'plain') out.writeUInt32LE(Math.floor((first + s) / 0x100000000), s * 16 + 4);
    }
    if (this.ivgen !== 'essiv') return out;
    const c = createCipheriv(this.essivAlgorithm!, this.essivKey!, null).setAutoPadding(false);
    return Buffer.concat([c.update(out), c.final()]);
  }

  private run(c: Cipher | Decipher, data: Uint8Array, off: number): void {
    const out = c.update(data.subarray(off, off + this.sectorSize));
    const fin = c.final();
    data.set(out, off);
    if (fin.length) data.set(fin, off + out.length);
  }

  private check(data: Uint8Array, firstSector: number): void {
    if (data.length % this.sectorSize !== 0) {
      throw new ArgumentError(
        'CRYPTO_UNALIGNED',
        `encrypted data length ${data.length} is not a multiple of ${this.sectorSize}`,
        {
          length: data.length,
        },
      );
    }
    if (!Number.isSafeInteger(firstSector) || firstSector < 0) {
      throw new ArgumentError('CRYPTO_BAD_SECTOR', `bad sector number ${firstSector}`, { firstSector });
    }
  }
}

/** XTS's tweaks and cipher input (SectorCipher.xts), grown to the longest request seen. */
let xtsScratch = new Uint32Array(0);

/** What a kept ECB cipher is for (SectorCipher.ecbOf). */
type EcbUse = 'cbcEnc' | 'cbcDec' | 'xtsTweak' | 'xtsEnc' | 'xtsDec';

/** The most bytes one batched pass takes (longer requests are cut: inBatches). */
const BATCH_BYTES = 256 * 1024;

/** Typed arrays use the platform's byte order; the XTS tweak words above assume little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** `data` as 32-bit words: a view when it is 4-byte aligned, else an aligned copy. */
function words(data: Uint8Array): Uint32Array {
  if (data.byteOffset % 4 === 0) return new Uint32Array(data.buffer, data.byteOffset, data.length >> 2);
  const copy = new Uint32Array(data.length >> 2);
  new Uint8Array(copy.buffer).set(data);
  return copy;
}
