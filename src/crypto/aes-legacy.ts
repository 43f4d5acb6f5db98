/**
 * Legacy qcow2 AES encryption (header crypt_method 1; QEMU crypto/block-qcow.c).
 *
 * - Cipher: AES-128-CBC, each 512-byte sector encrypted on its own.
 * - Key: the password's UTF-8 bytes, truncated to 16 or zero-padded to 16 (no KDF, no salt).
 * - IV: plain64 of the sector number, where the sector number is the GUEST offset / 512
 *   (block/qcow2-threads.c qcow2_co_encdec: crypt_physical_offset is false for AES, true for LUKS).
 *
 * Functions work in place on `data` (a multiple of 512 bytes) and return it. Built on node:crypto
 * (OpenSSL, as LUKS), in AES-128-ECB passes with CBC's chaining done here (CBC chains within a
 * sector only): encryption goes block column by block column across the sectors; decryption is one
 * pass over all the data, each block then XORed with the ciphertext block before it, or the
 * sector's IV for a sector's first block (CBC's definition).
 * The tests check it against aes-js, an independent pure-JS AES (test/crypto/aes-legacy.test.ts).
 */
import { textEncoder } from '../format/bytes.ts';
import { ArgumentError } from '../errors.ts';
import { CRYPTO_SECTOR_SIZE } from './sector-cipher.ts';
import { createCipheriv, createDecipheriv } from './node-crypto.ts';

export const AES_LEGACY_KEY_SIZE = 16;
export const AES_LEGACY_SECTOR_SIZE = CRYPTO_SECTOR_SIZE;

/** The 16-byte key QEMU derives from a password. */
export function aesLegacyKey(password: string | Uint8Array): Uint8Array {
  const bytes = typeof password === 'string' ? textEncoder.encode(password) : password;
  const key = new Uint8Array(AES_LEGACY_KEY_SIZE);
  key.set(bytes.subarray(0, AES_LEGACY_KEY_SIZE));
  return key;
}

/**
 * A reusable cipher for one image: `new AesLegacyCipher(aesLegacyKey(password))`.
 */
export class AesLegacyCipher {
  private readonly key: Uint8Array;

  constructor(key: Uint8Array) {
    this.key = aesLegacyKey(key);
  }

  /**
   * `firstSector` = guest offset of data[0] / 512. CBC chains within each sector only, so the
   * sectors are encrypted side by side: block j of every sector (XORed with its block j-1, or its
   * IV) in one AES-128-ECB pass, for j = 0 … 31.
   */
  encrypt(data: Uint8Array, firstSector: number): Uint8Array {
    checkSectors(data);
    const sectors = data.length / AES_LEGACY_SECTOR_SIZE;
    if (sectors === 0) return data;
    const ecb = createCipheriv('aes-128-ecb', this.key, null);
    ecb.setAutoPadding(false);
    const column = new Uint8Array(sectors * 16);
    const ivs = new Uint8Array(sectors * 16);
    for (let s = 0; s < sectors; s++) ivs.set(plain64(firstSector + s), s * 16);
    for (let j = 0; j < AES_LEGACY_SECTOR_SIZE; j += 16) {
      for (let s = 0; s < sectors; s++) {
        const at = s * AES_LEGACY_SECTOR_SIZE + j;
        for (let i = 0; i < 16; i++)
          column[s * 16 + i] = data[at + i]! ^ (j === 0 ? ivs[s * 16 + i]! : data[at - 16 + i]!);
      }
      const out = ecb.update(column);
      for (let s = 0; s < sectors; s++)
        data.set(out.subarray(s * 16, s * 16 + 16), s * AES_LEGACY_SECTOR_SIZE + j);
    }
    ecb.final();
    return data;
  }

  decrypt(data: Uint8Array, firstSector: number): Uint8Array {
    checkSectors(data);
    if (data.length === 0) return data;
    const ecb = createDecipheriv('aes-128-ecb', this.key, null);
    ecb.setAutoPadding(false);
    const d = ecb.update(data);
    ecb.final();
    // From the last block down: the ciphertext block before block o is still in `data`.
    for (let o = data.length - 16; o >= 0; o -= 16) {
      const inSector = o % AES_LEGACY_SECTOR_SIZE;
      const prev = inSector === 0 ? plain64(firstSector + o / AES_LEGACY_SECTOR_SIZE) : undefined;
      for (let i = 0; i < 16; i++) data[o + i] = d[o + i]! ^ (prev ? prev[i]! : data[o - 16 + i]!);
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
