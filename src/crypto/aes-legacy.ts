/**
 * Legacy qcow2 AES encryption (header crypt_method 1; QEMU crypto/block-qcow.c).
 *
 * - Cipher: AES-128-CBC, each 512-byte sector encrypted on its own.
 * - Key: the password's UTF-8 bytes, truncated to 16 or zero-padded to 16 (no KDF, no salt).
 * - IV: plain64 of the sector number, where the sector number is the GUEST offset / 512
 *   (block/qcow2-threads.c qcow2_co_encdec: crypt_physical_offset is false for AES, true for LUKS).
 *
 * Functions work in place on `data` (a multiple of 512 bytes) and return it. Built on node:crypto
 * (sector-cipher.ts, as LUKS is); the tests check it against aes-js, an independent implementation.
 */
import { textEncoder } from '../format/bytes.ts';
import { ArgumentError } from '../errors.ts';
import { CRYPTO_SECTOR_SIZE, SectorCipher } from './sector-cipher.ts';

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
 * A reusable cipher for one image: `new AesLegacyCipher(aesLegacyKey(password))`: a CBC/plain64
 * sector cipher on node:crypto (sector-cipher.ts: CBC in lockstep over the sectors of a request,
 * decryption in one ECB pass).
 */
export class AesLegacyCipher {
  private readonly cipher: SectorCipher;

  constructor(key: Uint8Array) {
    this.cipher = new SectorCipher({ key: aesLegacyKey(key), mode: 'cbc', ivgen: 'plain64' });
  }

  /** `firstSector` = guest offset of data[0] / 512. */
  encrypt(data: Uint8Array, firstSector: number): Uint8Array {
    checkSectors(data);
    return this.cipher.encrypt(data, firstSector);
  }

  decrypt(data: Uint8Array, firstSector: number): Uint8Array {
    checkSectors(data);
    return this.cipher.decrypt(data, firstSector);
  }
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
