/**
 * Sector ciphers as QEMU's crypto layer applies them (crypto/block.c
 * qcrypto_block_cipher_{en,de}crypt_helper): the data is cut into sectors, and each sector is
 * encrypted on its own with an IV computed from its sector number (the byte offset given by the
 * caller divided by the sector size).
 *
 * Built on node:crypto (OpenSSL): AES-NI speed, and XTS is built in (aes-js has no XTS; it serves
 * legacy AES only, see aes-legacy.ts).
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
    for (let off = 0, s = firstSector; off < data.length; off += this.sectorSize, s++) {
      const c = createCipheriv(this.algorithm, this.key, this.iv(s)).setAutoPadding(false);
      this.run(c, data, off);
    }
    return data;
  }

  decrypt(data: Uint8Array, firstSector: number): Uint8Array {
    this.check(data, firstSector);
    if (this.mode === 'cbc') return this.decryptCbc(data, firstSector);
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
    const cipherText = Buffer.from(data); // copy: data is overwritten
    const d = createDecipheriv(this.ecbAlgorithm, this.key, null).setAutoPadding(false);
    const plain = Buffer.concat([d.update(cipherText), d.final()]);
    for (let off = 0, s = firstSector; off < data.length; off += this.sectorSize, s++) {
      const iv = this.iv(s);
      for (let i = 0; i < 16; i++) data[off + i] = plain[off + i]! ^ iv[i]!;
      for (let i = off + 16; i < off + this.sectorSize; i++) data[i] = plain[i]! ^ cipherText[i - 16]!;
    }
    return data;
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
