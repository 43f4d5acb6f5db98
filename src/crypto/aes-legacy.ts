/**
 * Legacy qcow2 AES encryption (header crypt_method 1; QEMU crypto/block-qcow.c).
 *
 * - Cipher: AES-128-CBC, each 512-byte sector encrypted on its own.
 * - Key: the password's UTF-8 bytes, truncated to 16 or zero-padded to 16 (no KDF, no salt).
 * - IV: plain64 of the sector number, where the sector number is the GUEST offset / 512
 *   (block/qcow2-threads.c qcow2_co_encdec: crypt_physical_offset is false for AES, true for LUKS).
 *
 * Functions work in place on `data` (a multiple of 512 bytes) and return it. Built on aes-js (the
 * project's dependency for legacy AES); LUKS uses node:crypto, which has XTS.
 */
import { textEncoder } from '../format/bytes.ts';
import aesjs from 'aes-js';
import { ArgumentError } from '../errors.ts';
import { CRYPTO_SECTOR_SIZE } from './sector-cipher.ts';

export const AES_LEGACY_KEY_SIZE = 16;
export const AES_LEGACY_SECTOR_SIZE = CRYPTO_SECTOR_SIZE;

/** The 16-byte key QEMU derives from a password. */
export function aesLegacyKey(password: string | Uint8Array): Uint8Array {
  const bytes = typeof password === 'string' ? textEncoder.encode(password) : password;
  const key = new Uint8Array(AES_LEGACY_KEY_SIZE);
  key.set(bytes.subarray(0, AES_LEGACY_KEY_SIZE));
  return key;
}

/** aes-js's block cipher (its published types omit `decrypt`). */
interface AesBlock {
  encrypt(block: Uint8Array): ArrayLike<number>;
  decrypt(block: Uint8Array): ArrayLike<number>;
}

/**
 * A reusable cipher for one image: `new AesLegacyCipher(aesLegacyKey(password))`. CBC is chained
 * by hand over aes-js's block cipher (the key schedule is computed once, not per sector).
 */
export class AesLegacyCipher {
  private readonly aes: AesBlock;

  constructor(key: Uint8Array) {
    this.aes = new aesjs.AES(aesLegacyKey(key)) as unknown as AesBlock;
  }

  /** `firstSector` = guest offset of data[0] / 512. */
  encrypt(data: Uint8Array, firstSector: number): Uint8Array {
    checkSectors(data);
    const block = new Uint8Array(16);
    for (let s = 0; s < data.length / AES_LEGACY_SECTOR_SIZE; s++) {
      let prev = plain64(firstSector + s);
      for (let o = s * AES_LEGACY_SECTOR_SIZE; o < (s + 1) * AES_LEGACY_SECTOR_SIZE; o += 16) {
        for (let i = 0; i < 16; i++) block[i] = data[o + i]! ^ prev[i]!;
        const out = this.aes.encrypt(block);
        for (let i = 0; i < 16; i++) data[o + i] = out[i]!;
        prev = data.subarray(o, o + 16);
      }
    }
    return data;
  }

  decrypt(data: Uint8Array, firstSector: number): Uint8Array {
    checkSectors(data);
    const prev = new Uint8Array(16);
    const cur = new Uint8Array(16);
    for (let s = 0; s < data.length / AES_LEGACY_SECTOR_SIZE; s++) {
      prev.set(plain64(firstSector + s));
      for (let o = s * AES_LEGACY_SECTOR_SIZE; o < (s + 1) * AES_LEGACY_SECTOR_SIZE; o += 16) {
        cur.set(data.subarray(o, o + 16));
        const out = this.aes.decrypt(cur);
        for (let i = 0; i < 16; i++) data[o + i] = out[i]! ^ prev[i]!;
        prev.set(cur);
      }
    }
    return data;
  }
}

/** The IV: the sector number as a little-endian u64 in a zeroed 16-byte block (plain64). */
function plain64(sector: number): Uint8Array {
  const iv = new Uint8Array(16);
  let v = sector;
  for (let i = 0; i < 8; i++) {
    iv[i] = v % 256;
    v = Math.floor(v / 256);
  }
  return iv;
}

function checkSectors(data: Uint8Array): void {
  if (data.length % AES_LEGACY_SECTOR_SIZE !== 0) {
    throw new ArgumentError('CRYPTO_UNALIGNED', 'AES data must be whole 512-byte sectors', {
      length: data.length,
    });
  }
}

/** One-shot helpers; `key` is a password or key bytes (normalised to 16 bytes either way). */
export function encryptSectors(key: string | Uint8Array, firstSector: number, data: Uint8Array): Uint8Array {
  return new AesLegacyCipher(aesLegacyKey(key)).encrypt(data, firstSector);
}

export function decryptSectors(key: string | Uint8Array, firstSector: number, data: Uint8Array): Uint8Array {
  return new AesLegacyCipher(aesLegacyKey(key)).decrypt(data, firstSector);
}
